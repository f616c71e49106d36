"""Minimal ANSI SGR styling, so the log formatters need no third-party colour library."""

from __future__ import annotations

# SGR foreground codes; the names follow click's so `fg="bright_red"` etc. read the same.
_FOREGROUND: dict[str, int] = {
    "black": 30,
    "red": 31,
    "green": 32,
    "yellow": 33,
    "blue": 34,
    "magenta": 35,
    "cyan": 36,
    "white": 37,
    "bright_black": 90,
    "bright_red": 91,
    "bright_green": 92,
    "bright_yellow": 93,
    "bright_blue": 94,
    "bright_magenta": 95,
    "bright_cyan": 96,
    "bright_white": 97,
}

RESET = "\033[0m"


def style(text: str, fg: str | None = None, bold: bool = False) -> str:
    """Wrap ``text`` in SGR codes; always ends with a reset, matching click.style's output."""
    codes = []
    if fg is not None:
        codes.append(f"\033[{_FOREGROUND[fg]}m")
    if bold:
        codes.append("\033[1m")
    return "".join(codes) + text + RESET
