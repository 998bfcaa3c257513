"""The public surface: `__all__` is sorted, importable and complete."""

from __future__ import annotations
import __future__

import importlib.metadata
import types

import sendblue_lines
from sendblue_lines import errors

#: The names issue 2 made public; later issues only add to them.
FOUNDATION = {
    "APIError",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "DailyLimitReachedError",
    "LimitWindow",
    "LinesClient",
    "MalformedResponseError",
    "MonthlyLimitReachedError",
    "NoCardOnFileError",
    "NoLinesAvailableError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "Preview",
    "ProvisionedLine",
    "ProvisioningFailedError",
    "ProvisioningLimits",
    "RateLimitError",
    "RetryPolicy",
    "SendblueError",
    "ServerError",
    "TokenExpiredError",
    "TransportError",
    "__version__",
}


def public_attributes() -> set[str]:
    """What `import sendblue_lines` actually offers, submodules and imports aside.

    `dir()`, not `vars()`: the journal's stores load on first use, and are
    listed before they are loaded.
    """
    return {
        name
        for name in dir(sendblue_lines)
        if not name.startswith("_")
        and not isinstance(value := getattr(sendblue_lines, name), types.ModuleType)
        and value is not __future__.annotations
    }


def test_all_is_sorted_without_duplicates() -> None:
    """`__all__` is kept sorted, each name once."""
    assert sendblue_lines.__all__ == sorted(set(sendblue_lines.__all__))


def test_every_name_in_all_is_importable() -> None:
    """Each name in `__all__` exists on the package."""
    for name in sendblue_lines.__all__:
        assert hasattr(sendblue_lines, name), name


def test_all_is_exactly_the_public_surface() -> None:
    """Every public attribute of the package is in `__all__`, and nothing else is."""
    exported = set(sendblue_lines.__all__) - {"__version__"}
    assert exported == public_attributes()


def test_the_foundation_names_stay_public() -> None:
    """The names design.md and issue 2 promise are all exported."""
    assert set(sendblue_lines.__all__) >= FOUNDATION


def test_every_error_is_public() -> None:
    """Each class of `sendblue_lines.errors.__all__` is exported by the package."""
    assert set(errors.__all__) <= set(sendblue_lines.__all__)
    for name in errors.__all__:
        assert getattr(sendblue_lines, name) is getattr(errors, name)


def test_version_matches_the_installed_distribution() -> None:
    """`__version__` is the version pip installed, and the User-Agent's."""
    assert sendblue_lines.__version__ == importlib.metadata.version("sendblue-lines")
