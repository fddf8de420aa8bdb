"""Argument checks shared by the data functions: they run before TensorFlow is imported."""

import numbers


def check_positive_int(name: str, value: object) -> int:
    """Returns `value` if it is a positive integer, else raises naming `name`.

    Arguments:
        name: the argument's name, for the error message.
        value: the value received.

    Returns:
        `value` as a Python `int`.
    """
    # bool is an Integral; `batch_size=True` is a mistake, not a batch of one.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` (={value!r}) must be a positive integer. Received: {_received(value)}.")
    return int(value)


def _received(value: object) -> str:
    return f"{value!r} of type {type(value).__name__}"


def check_square_size(name: str, value: object) -> int:
    """Returns `value` if it is a positive integer (the side of square images), else raises.

    Arguments:
        name: the argument's name, for the error message.
        value: the value received.

    Returns:
        `value` as a Python `int`.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"`{name}` (={value!r}) must be a positive int: the side of the square inputs. "
            f"Received: {_received(value)}."
        )
    return int(value)


def check_seed(name: str, value: object) -> int:
    """Returns `value` if it is a non-negative integer (a seed), else raises.

    Arguments:
        name: the argument's name, for the error message.
        value: the value received.

    Returns:
        `value` as a Python `int`.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(
            f"`{name}` (={value!r}) must be a non-negative integer. Received: {_received(value)}."
        )
    return int(value)


def check_process(process_index: object, process_count: object) -> tuple[int, int]:
    """Checks `0 <= process_index < process_count`.

    Arguments:
        process_index: this host's index.
        process_count: the number of hosts.

    Returns:
        `(process_index, process_count)` as Python `int`s.
    """
    process_count = check_positive_int("process_count", process_count)
    if (
        isinstance(process_index, bool)
        or not isinstance(process_index, numbers.Integral)
        or not 0 <= process_index < process_count
    ):
        raise ValueError(
            f"`process_index` (={process_index!r}) must be an integer in "
            f"[0, `process_count` (={process_count})). Received: {_received(process_index)}."
        )
    return int(process_index), process_count
