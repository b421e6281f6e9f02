"""The online side: stores that hold each entity's newest feature row, and serving lookups."""
