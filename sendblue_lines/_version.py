"""The version of sendblue-lines, in one place for hatch and the User-Agent."""

__version__ = "0.1.0"
