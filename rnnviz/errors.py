"""The one exception type that the CLI turns into a clean one-line message."""


class RnnvizError(Exception):
    """A problem with the user's input (file, checkpoint, store, option), not a bug in rnnviz.

    The CLI prints ``Error: <message>`` and exits with status 1; library callers can catch it.
    """
