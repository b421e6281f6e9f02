"""Which code may run a registered view version: the repo's, or an archived module's, never the registry's.

The registry keeps each version's source text for display and diffs only. To run a version (an
on-demand view in a training set or a lookup, a batch view in a materialization), featurekit
needs a definition imported from Python files whose code hash and data-relevant arguments equal
the version's: the repo's current definition, or one in the archive (``archive:`` globs in
``featurekit.yaml``, by default ``archive/*.py``) where old versions' code can be kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from featurekit.applied import check_applied
from featurekit.definitions import FeatureView, OnDemandView
from featurekit.errors import NotAppliedError, UnknownNameError, did_you_mean
from featurekit.references import parse_ref
from featurekit.registry import Registry, ViewVersion
from featurekit.repo import RepoDefinitions, load_archive


class Codebase:
    """Finds the importable code of registered view versions (repo first, then the archive)."""

    def __init__(
        self,
        root: Path,
        definitions: Callable[[], RepoDefinitions],
        archive_patterns: list[str],
        registry: Registry,
    ) -> None:
        self.root = root
        self._definitions = definitions
        self._archive_patterns = archive_patterns
        self._archive: list[FeatureView | OnDemandView] | None = None
        self.registry = registry

    @property
    def definitions(self) -> RepoDefinitions:
        return self._definitions()

    def archive(self) -> list[FeatureView | OnDemandView]:
        """The archived definitions (imported on first use)."""
        if self._archive is None:
            self._archive = load_archive(self.root, self._archive_patterns)
        return self._archive

    def matches(self, candidate: FeatureView | OnDemandView | None, version: ViewVersion) -> bool:
        if candidate is None or candidate.name.lower() != version.view.lower():
            return False
        try:
            check_applied(candidate, version)
        except NotAppliedError:
            return False
        return True

    def code_for(self, version: ViewVersion) -> FeatureView | OnDemandView:
        """The definition to run for ``version``, or :class:`NotAppliedError` saying how to provide it."""
        current = self.definitions.any_view(version.view)
        if self.matches(current, version):
            assert current is not None
            return current
        for archived in self.archive():
            if self.matches(archived, version):
                return archived
        git = self.registry.commit(version.commit_id).git_commit
        recorded = f"the repo was at git commit {git} when it was applied" if git else "no git commit was recorded"
        found = "is not in the repo" if current is None else "has different code in the repo now"
        raise NotAppliedError(
            f"feature view '{version.view}' v{version.version} (code {version.code_hash}, defined at "
            f"{version.location}) {found}, and no archived module matches it ({recorded}). featurekit only runs "
            "code imported from Python files, never from the registry: restore that definition into a file "
            f"matching {self._archive_patterns} (`featurekit show {version.view}@v{version.version}` prints its "
            "source), or re-apply it"
        )

    def loaded_view(self, name: str) -> FeatureView:
        """The repo's batch view ``name`` (case-insensitive), or :class:`UnknownNameError` with a "did you mean"."""
        views = self.definitions.views
        found = next((v for n, v in views.items() if n.lower() == name.lower()), None)
        if found is None:
            raise UnknownNameError(f"no feature view {name!r} in {self.root}{did_you_mean(name, views)}")
        return found

    def batch_views(self, names: Sequence[str] | None) -> list[tuple[FeatureView, ViewVersion]]:
        """The views to materialize with the code to run: ``"name"`` (applied) or ``"name@v1"`` (pinned).

        Default: every batch view of the repo. An unapplied or changed view is refused.
        """
        active = self.registry.active()
        names = list(names) if names else sorted(self.definitions.views)
        pairs = []
        for name in names:
            ref = parse_ref(name)
            if ref.feature is not None:
                raise UnknownNameError(f"materialize takes views ('view' or 'view@v1'), not features: {name!r}")
            if ref.version is not None:
                version = self.registry.version(ref.view, ref.version)
            else:
                view = self.loaded_view(ref.view)
                current = next((a for n, a in active.items() if n.lower() == view.name.lower()), None)
                if current is None:
                    raise NotAppliedError(f"feature view '{view.name}' is not applied yet; run `featurekit apply`")
                check_applied(view, current.version)
                version = current.version
            code = self.code_for(version)
            if not isinstance(code, FeatureView):
                raise UnknownNameError(f"'{version.view}' is an on-demand view: computed when read, never materialized")
            pairs.append((code, version))
        return pairs
