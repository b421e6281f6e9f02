"""Feature quality: checks before commit, profiles per data version, drift and consistency reports.

* :mod:`.inspection` is the one hook a materialization or push calls on its output batches
  before it commits: it runs the view's checks (:mod:`.checks`) and builds the profile
  (:mod:`.profiling`) in the same pass, and hands back the records the registry stores with
  the commit.
* :mod:`.profile` is the profile model (what every statistic means and how two compare);
  :mod:`.profiling` builds profiles from mergeable per-commit states (on the summaries of
  :mod:`.sketches`), :mod:`.data_profiles` gives a data version's or a window's profile from
  the registry and the engine, :mod:`.display` prints one;
  :mod:`.drift` compares two profiles.
* :mod:`.serving_log` appends what ``online_features`` served to Parquet files off the lookup's
  path (``online.log``); :mod:`.consistency` recomputes those rows through the training path.
"""
