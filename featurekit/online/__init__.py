"""The online side: stores that hold each entity's latest feature row, and serving lookups."""
