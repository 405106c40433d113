from collections.abc import Callable

def run(
    context: tuple[object, ...],
    data: bytes,
    meta: bytes,
    horizon: float,
    handle: Callable[[float, bytes], float],
) -> tuple[int, int, int]: ...
