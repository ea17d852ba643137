"""Writing the suite's files so that a failure (a full disk, a killed process) loses nothing
already there: whole files replaced atomically, whole lines appended or none, one writer at a time."""
import fcntl
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text`, or leave it as it was (and no temporary file) if that fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Appended:
    """What append_lines did: `undo()` takes the lines out again (for a change that then failed);
    `repaired` says how a torn last line found before appending was set aside (None: there was none)."""

    def __init__(self, path: Path, start: int | None, repaired: str | None):
        self.path, self.start, self.repaired = path, start, repaired

    def undo(self) -> None:
        if self.start is not None:
            with open(self.path, "r+b") as f:
                f.truncate(self.start)


def append_lines(path: Path, lines: list[str]) -> Appended:
    """Append whole lines, or none: a write cut short (a full disk) is truncated back. A last line
    already there without its newline is never glued to the first new one (repair_torn_tail).
    The caller holds the file's lock."""
    path = Path(path)
    if not lines:
        return Appended(path, None, None)
    repaired = repair_torn_tail(path)
    data = "".join(line + "\n" for line in lines).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(28, f"No space left on device (wrote {written} of {len(data)} bytes)", str(path))
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
    return Appended(path, start, repaired)


def repair_torn_tail(path: Path) -> str | None:
    """Make `path` (JSON lines) end with a whole line before anything is appended to it. A last
    line that is a whole JSON object and only lacks its newline gets the newline; a torn one (a
    crash or a full disk mid-append, a bad merge) is moved to `<path>.torn`, kept there, and the
    file cut back to its last whole line. Returns what was done, for the user, or None. Raises
    OSError, leaving `path` as it was, when the fragment cannot be set aside."""
    path = Path(path)
    try:
        f = open(path, "r+b")
    except FileNotFoundError:
        return None
    with f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        end = _last_newline(f, size) + 1  # 0 when the file is one line without its newline
        f.seek(end)
        fragment = f.read()
        try:
            whole = isinstance(json.loads(fragment), dict)
        except ValueError:  # also a cut inside a multi-byte character
            whole = False
        if whole:
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
            return None
        torn = path.with_name(path.name + ".torn")
        try:
            with open(torn, "ab") as aside:
                aside.write(fragment + b"\n")
                aside.flush()
                os.fsync(aside.fileno())
        except OSError as exc:
            raise OSError(exc.errno, f"the last line of {path} is torn ({len(fragment)} bytes without an end) and "
                          f"could not be set aside in {torn} ({exc.strerror}); nothing was appended: free space "
                          f"or fix {path} by hand (remove its last, incomplete line)", str(path)) from None
        f.truncate(end)
        f.flush()
        os.fsync(f.fileno())
    return (f"{path}: its last line was torn ({len(fragment)} bytes, an append cut short); moved to {torn}, "
            "and the history goes on after its last whole line")


def _last_newline(f, size: int, chunk: int = 1 << 16) -> int:
    """The offset of the last newline in the open file `f` of `size` bytes, or -1."""
    pos = size
    while pos > 0:
        start = max(0, pos - chunk)
        f.seek(start)
        found = f.read(pos - start).rfind(b"\n")
        if found >= 0:
            return start + found
        pos = start
    return -1


@contextmanager
def locked(path: Path):
    """Hold `<path>.lock` exclusively: two pytest processes updating one file take turns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def claim(path: Path):
    """Hold `.<name>.lock` beside `path` for as long as the returned file stays open (a process's
    life): one writer of `path` at a time. Returns (the open lock file, None), or (None, the pid
    of the process that holds it) without waiting."""
    path = Path(path)
    lock = open(path.with_name(f".{path.name}.lock"), "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        return None, holder
    try:  # who holds it, for the message of the one refused; a full disk may not take it
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
    except OSError:
        pass
    return lock, None


def read_json(path: Path, error: type[Exception], what: str):
    """The strict JSON (no NaN or Infinity) in `path`, which should hold `what` ("the baseline
    file", "a results file"); anything else raises `error` with one line naming the path."""
    try:
        raw = Path(path).read_bytes()
    except IsADirectoryError:
        raise error(f"{path}: a folder, where {what} should be; move it away or name the file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    return parse_json(raw, path, error, what)


def parse_json(raw: bytes, path: Path, error: type[Exception], what: str):
    """read_json's checks on bytes already read from `path` (a caller that also keeps their digest)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file, so not {what}; fix or remove it") from None
    try:
        data = json.loads(text, parse_constant=_NotANumber)
    except ValueError as exc:
        raise error(f"{path}: not valid JSON ({exc}; empty or truncated?), so not {what}") from None
    where = _first_not_a_number(data)
    if where is not None:
        field, name = where
        raise error(f"{path}: field '{field}': {name} is not a number JSON allows; fix or remove it") from None
    return data


class _NotANumber(str):
    """NaN, Infinity or -Infinity where the file has it, so that the error can say where."""


def _first_not_a_number(data, at: str = ""):
    if isinstance(data, _NotANumber):
        return at, str(data)
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in children:
        found = _first_not_a_number(value, f"{at}[{key}]" if isinstance(key, int) else f"{at}.{key}".lstrip("."))
        if found:
            return found
    return None


def validation_message(error: dict) -> str:
    """A pydantic error's message for a user: without pydantic's model class names, with the value
    found where it is short enough to read."""
    message = re.sub(r" or instance of \w+", "", error["msg"])
    if error["type"] == "value_error":  # a validator's own sentence, which names its field
        return message.removeprefix("Value error, ")
    if error["type"] != "missing" and "input" in error:
        shown = repr(error["input"])
        if not isinstance(error["input"], (dict, list)) or len(shown) <= 40:
            message += f" (got {shown})"
    return message
