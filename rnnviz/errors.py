"""The one exception type that the CLI turns into a clean one-line message."""


class RnnvizError(Exception):
    """A problem with the user's input (file, checkpoint, store, option), not a bug in rnnviz.

    The CLI prints ``Error: <message>`` and exits with status 1; library callers can catch it.
    """


MAX_SEED = 2**32 - 1  # what numpy's and torch's generators both take


def check_seed(seed) -> int:
    """A random seed, the one check: a whole number from 0 to 2³² - 1."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise RnnvizError(f"seed must be a whole number from 0 to {MAX_SEED:,}, got {seed!r}")
    return seed
