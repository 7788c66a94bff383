"""The release this code is (CHANGELOG.md); shown by every script's --version and recorded in run_info.json."""

__version__ = "0.1.0.dev0"
