"""The one error this package adds: pretrained weights that could not be downloaded."""


class WeightsUnavailableError(OSError):
    """Pretrained weights could not be fetched (no internet?) or are not in the weights folder; the
    message says how to proceed (repro.models.weights).

    An OSError, so the command line reports it as one line.
    """
