"""Files written whole and read with care, shared by every script: atomic writes (a temp file,
then os.replace; what a killed process left is swept), output paths tried before any work, locks
on output folders, caches stamped with what made them, the JSON and checkpoint readers, and the
errors that the scripts turn into one line and exit status 2."""
import fcntl
import json
import os
import pathlib
import re
import stat
import subprocess
import sys

import torch
from PIL import Image


class UserError(ValueError):
    """Bad input from the user: reported as one line on stderr, exit status 2."""


class WriteError(UserError):
    """A file that could not be written (a full disk, a folder that takes no file): one line, and
    exit status 2, like bad input."""
    def __init__(self, path, why):
        super().__init__(f"cannot write {path} ({why}); any file there before is intact")
        self.path, self.why = path, why


class Finished(Exception):
    """--resume of a run that has already ended: nothing to do, and the files it wrote stay as they
    are."""


def regular(path, what="file"):
    """path, checked to be a regular file (or a link to one): a folder, a pipe, a device, a link
    to nothing or in a loop is a UserError naming it, never a read that hangs or a traceback."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:  # missing, a dead or looping link, a name too long, no permission
        raise UserError(f"cannot read {what} {path} ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise UserError(f"{what} {path} is not a regular file (a pipe or a device?)")
    return path


def open_file(path, mode="r", what="file", **kwargs):
    """open(path, mode), the one opener of the project: a path that is there must be a regular
    file (files.regular), and what the OS refuses (permissions, a full disk) is one line. A file
    that is not there is FileNotFoundError, for the caller to say what is missing."""
    if os.path.lexists(path):
        regular(path, what)
    try:
        return open(path, mode, **kwargs)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise UserError(f"cannot open {what} {path} ({e.strerror})") from None


def walk(folder, wanted=None):
    """The regular files under folder whose names wanted(name) accepts (None: all), links
    followed, in os.walk's sorted order: each real file once (a second path to it is skipped),
    each folder once (a link back up the tree, a loop, is not walked again). A wanted name that is
    no regular file (a pipe, a device, a link to nothing) is a UserError naming it."""
    folders, seen, found = set(), set(), []

    def visit(path):
        st = os.stat(path)
        if (st.st_dev, st.st_ino) in folders:
            return
        folders.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as e:
            raise UserError(f"cannot read folder {path} ({e.strerror})") from None
        below = []
        for e in entries:
            try:
                st = e.stat()  # of what a link leads to
            except OSError:
                st = None
            if st is not None and stat.S_ISDIR(st.st_mode):
                below.append(e.path)
            elif wanted is None or wanted(e.name):
                regular(e.path)  # a pipe, a device, a link to nothing: named
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    found.append((path, e.name))
        for sub in below:
            visit(sub)

    visit(os.fspath(folder))
    return [os.path.join(path, name) for path, name in sorted(found)]  # as sorted(os.walk(folder))


def temp_path(path, pid=None):
    """Where write_atomic writes path first: beside it, named after the process, the extension
    kept (save_image picks the format by it)."""
    root, ext = os.path.splitext(path)
    return f"{root}.tmp{os.getpid() if pid is None else pid}{ext}"


def remove_leftovers(folder):
    """The temp files in folder that killed processes left behind (a live writer's stay)."""
    for entry in os.scandir(folder):
        m = re.fullmatch(r".+\.tmp(\d+)(\.\w+)?", entry.name)
        if m and entry.is_file() and not alive(int(m[1])):
            os.remove(entry.path)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_atomic(path, write, keep_previous=None):
    """write(tmp) to a flushed temp file beside path, then os.replace: a crash never leaves a
    half-written file, and what a killed one left is removed the next time its folder is
    written. With keep_previous, the file being replaced is moved there first. A fault of the disk
    or of permissions, in making the folder too, is a WriteError."""
    tmp = temp_path(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        remove_leftovers(os.path.dirname(os.path.abspath(path)))
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if keep_previous and os.path.exists(path):
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
        why = e.strerror if isinstance(e, OSError) and e.strerror else "the disk is full?"
        raise WriteError(path, why) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def writable(path):
    """An output file's path, tried before any work (its temp file made and removed): refused when
    it is a folder or another thing that is no regular file, a folder on its way is a file, its
    name is too long or its folder takes no file."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder; give a file name")
    if os.path.lexists(path) and not os.path.isfile(path):  # written over, it would be replaced
        raise UserError(f"{path} is there and is no regular file (a pipe, a device or a link to "
                        "nothing); give another file name")
    folder = os.path.dirname(os.path.abspath(path))
    if blocking := next((p for p in [folder, *pathlib.Path(folder).parents] if os.path.isfile(p)),
                        None):
        raise UserError(f"cannot write {path}: {blocking} is a file, not a folder")
    try:
        chain = [folder, *map(str, pathlib.Path(folder).parents)]
        new = [p for p in chain if not os.path.exists(p)]
        os.makedirs(folder, exist_ok=True)
        _MADE.extend(reversed(new))  # top-most first
        with open(temp_path(path), "xb"):
            pass
        os.remove(temp_path(path))
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror})") from None
    return path


_MADE = []  # folders writable() made, to remove again if the process leaves nothing in them


def remove_made_folders():
    """The folders writable() made that hold nothing (but a lock file) when the process ends: a run
    that failed before it started leaves no empty --out behind."""
    for folder in reversed(_MADE):  # deepest first
        left = set(os.listdir(folder)) if os.path.isdir(folder) else None
        if left is not None and left <= {".lock"}:
            for name in left:
                os.remove(os.path.join(folder, name))
            os.rmdir(folder)
    _MADE.clear()


def writable_image(path):
    """writable(path), and its extension one that PIL writes (it picks the format by it)."""
    Image.init()
    if os.path.splitext(path)[1].lower() not in Image.registered_extensions():
        raise UserError(f"cannot write {path}: give an image file name (.png, .jpg, ...)")
    return writable(path)


_HELD = {}  # folder -> (its open lock file, whether this process made it); the OS lets go of it
# when the process ends, however


def hold(folder):
    """Hold an output folder for this process: another process that asks for it while this one
    lives is refused, and a killed process leaves nothing stuck (flock dies with it). Under
    torchrun, rank 0 holds it for the run. A lock that cannot be taken (a folder named .lock, a
    full disk, no permission) is one line."""
    key = os.path.realpath(folder)
    if key in _HELD or os.environ.get("RANK", "0") != "0":
        return
    lock = os.path.join(folder, ".lock")
    if os.path.islink(lock):  # opened for writing, it would truncate what it leads to
        raise UserError(f"{lock} is a symbolic link; remove it (a lock is a plain file)")
    made = not os.path.lexists(lock)
    f = open_file(lock, "a+", what="the lock file")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise UserError(f"{folder} is in use by another run (process {holder}): wait for it "
                        "to end, or choose another --out") from None
    _HELD[key] = (f, made)
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
    except OSError as e:
        raise WriteError(lock, e.strerror) from None


def held_folders():
    """The output folders this process holds."""
    return list(_HELD)


def release_folders():
    """Let go of the folders held; a lock file this process made is removed first (while still
    held), so that a run leaves no .lock behind, a refused one included."""
    while _HELD:
        folder, (f, made) = _HELD.popitem()
        if made:
            try:
                os.remove(os.path.join(folder, ".lock"))
            except OSError:  # gone already, or a folder that takes no change: the lock stays
                pass
        try:
            f.close()
        except OSError:  # the pid that a full disk could not take: nothing to keep
            pass


def save_atomic(obj, path, keep_previous=None):
    """torch.save, written whole; to a file object, so that the archive inside is not named after
    the temp file: the same content gives the same bytes."""
    def save(tmp):
        with open(tmp, "wb") as f:
            torch.save(obj, f)
    write_atomic(path, save, keep_previous)


def save_text(text, path):
    write_atomic(path, lambda tmp: pathlib.Path(tmp).write_text(text))


def save_json(obj, path):
    save_text(json.dumps(obj, indent=1), path)


def load_checkpoint(path):
    """torch.load(path, weights_only=True); a missing or unreadable file is a UserError."""
    if not os.path.lexists(path):
        raise UserError(f"no checkpoint at {path}")
    regular(path, "checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        why = type(e).__name__
        raise UserError(f"checkpoint {path} is corrupt or not a checkpoint ({why})") from None


def read_cache(path, what, keys):
    """The cache at path (None: no file), its "stamp" saying what it was made from, its tensors
    mapped from the file. One rule for every cache: a file there that is not `what` (a dict with
    `keys`) is refused, never written over."""
    if not os.path.lexists(path):
        return None
    regular(path, what)
    try:
        # mapped, not read: a run reads only the pages of what it uses (a band's eigenvectors of a
        # 6.1 GB basis), and processes on one machine share them in the page cache
        cache = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        cache = None
    if not isinstance(cache, dict) or not set(keys) <= cache.keys():
        raise UserError(f"{path} is not {what}; delete or move it")
    return cache


def write_cache(cache, path, stamp):
    """Save a cache with its stamp (what it was made from); where it cannot be written (a read-only
    data folder), go on without it."""
    try:
        save_atomic(cache | {"stamp": stamp}, path)
    except WriteError as e:
        print(f"warning: cannot write the cache {e.path} ({e.why}); going on without it",
              file=sys.stderr)


def read_json(path, what):
    """A JSON object this project wrote; anything else (cut short, edited, not UTF-8, not an
    object) is a UserError naming the file."""
    with open_file(path, what=what, encoding="utf-8") as f:
        try:
            obj = json.loads(f.read())
        except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
            obj = None
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not a {what} of this project (truncated, edited or not UTF-8?)")
    return obj


def read_jsonl(path):
    """A log's lines; a last line cut short (a run killed while writing it) is dropped."""
    try:
        with open_file(path, what="log", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a log of this project (not UTF-8)") from None
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i + 1 < len(lines):
                raise UserError(f"{path} is corrupt at line {i + 1}") from None
    if not all(isinstance(row, dict) for row in rows):
        raise UserError(f"{path} is not a log of this project (a line is not an object)")
    return rows


def git_commit():
    """The commit of this code, for results files (None outside a git checkout)."""
    p = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                       capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None
