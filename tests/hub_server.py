"""A small Hugging Face Hub-compatible HTTP server for the tests (loopback only).

It serves what ``huggingface_hub`` 2.4 and ``datasets`` 5.2 call when ``HF_ENDPOINT`` points at
it: repo creation, README metadata validation, the preupload / LFS batch (basic transfer) /
commit sequence of ``create_commit``, ``model_info`` / ``dataset_info`` (with revisions), tree
listing, paths-info, and ``resolve`` downloads with HEAD and byte ranges. Repos live in a temp
folder; every commit is a snapshot of {path: blob}, stored only once the whole commit request
has been read and checked, so a failed commit leaves the repo as it was.

Clients must use the plain LFS protocol: set ``HF_HUB_DISABLE_XET=1`` in their environment
(``huggingface_hub`` uploads through Xet whenever ``hf_xet`` is importable, and this server
speaks no Xet). The server never advertises Xet (no ``X-Xet-Hash`` headers), so downloads are
plain HTTP anyway.

Faults for the failure tests (each fires once, then is cleared), set on :attr:`HubServer.faults`:

- ``"commit_500"``: the next ``/commit`` request answers 500 after the uploads went through.
- ``"truncate": "PATH"``: the next GET of a file whose path ends with PATH sends the headers
  of the full file, then half the body, then closes the connection.

Every request is recorded in :attr:`HubServer.log` as ``(method, path, range header)``.
This is test infrastructure, not product code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SUFFIXES = (".safetensors", ".parquet", ".bin", ".pt", ".ckpt", ".arrow", ".npy", ".mp4", ".wav")
_SHA40 = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    """One repo on disk: ``blobs/<sha256>`` plus ``commits.json`` (oldest first)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.blobs = folder / "blobs"

    @property
    def commits(self) -> list[dict]:
        return json.loads((self.folder / "commits.json").read_text())

    def head(self, revision: str = "main") -> dict | None:
        commits = self.commits
        if revision in ("main", "HEAD"):
            return commits[-1]
        return next((c for c in commits if c["oid"] == revision), None)

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.blobs.mkdir(parents=True, exist_ok=True)
        (self.blobs / sha).write_bytes(data)
        return sha

    def add_commit(self, message: str, files: dict) -> dict:
        commits = self.commits
        oid = hashlib.sha1(json.dumps([commits[-1]["oid"] if commits else "", message, files],
                                      sort_keys=True).encode()).hexdigest()
        commit = {"oid": oid, "message": message, "files": files, "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
        tmp = self.folder / "commits.json.tmp"
        tmp.write_text(json.dumps(commits + [commit]))
        tmp.rename(self.folder / "commits.json")  # the commit becomes visible in one step
        return commit


def _file_entry(path: str, meta: dict) -> dict:
    out = {"type": "file", "oid": meta["git_oid"], "size": meta["size"], "path": path}
    if meta["lfs"]:
        out["lfs"] = {"oid": meta["sha256"], "size": meta["size"], "pointerSize": 134}
    return out


def _tree(files: dict, base: str, recursive: bool) -> list[dict]:
    base = base.strip("/")
    pre = base + "/" if base else ""
    out, dirs = [], set()
    for path in sorted(files):
        if not path.startswith(pre):
            continue
        rest = path[len(pre):]
        parts = rest.split("/")
        for i in range(1, len(parts) if recursive else min(2, len(parts))):
            dirs.add(pre + "/".join(parts[:i]))
        if recursive or len(parts) == 1:
            out.append(_file_entry(path, files[path]))
    out += [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
            for d in sorted(dirs)]
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet
        pass

    # ------------------------------------------------------------ plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None, ctype="application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, code: int = 200, headers: dict | None = None) -> None:
        self._send(code, json.dumps(obj).encode(), headers)

    def _error(self, code: int, message: str, error_code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if error_code:
            headers["X-Error-Code"] = error_code
        self._json({"error": message}, code, headers)

    def _authorised(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.server.hub.token}"

    def _repo(self, rtype: str, org: str, name: str) -> Repo | None:
        folder = self.server.hub.root / rtype / org / name
        return Repo(folder) if (folder / "commits.json").is_file() else None

    def _revision(self, repo: Repo, rev: str) -> dict | None:
        commit = repo.head(unquote(rev))
        if commit is None:
            self._error(404, f"Invalid rev id: {unquote(rev)}", "RevisionNotFound")
        return commit

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        hub = self.server.hub
        hub.log.append((self.command, path, self.headers.get("Range")))
        for pattern, method_name in _ROUTES:
            m = pattern.match(path)
            if m and self.command in _METHODS[method_name]:
                args = {k: v for k, v in m.groupdict().items() if v is not None}
                try:
                    getattr(self, method_name)(query=query, **args)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                except Exception as e:  # noqa: BLE001 - a server bug must show up as a 500, not a hang
                    hub.errors.append(f"{self.command} {path}: {type(e).__name__}: {e}")
                    self._error(500, f"test hub server error: {type(e).__name__}")
                return
        self._error(404, f"no route for {self.command} {path}")

    do_GET = do_HEAD = do_POST = do_PUT = _dispatch

    # ------------------------------------------------------------ API
    def whoami(self, query) -> None:
        if not self._authorised():
            return self._error(401, "Invalid credentials in Authorization header")
        self._json({"type": "user", "name": "tester", "orgs": [], "auth": {"accessToken": {"role": "write"}}})

    def validate_yaml(self, query) -> None:
        import yaml

        content = json.loads(self._body()).get("content", "")
        m = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            if m:
                meta = yaml.safe_load(m.group(1))
                if meta is not None and not isinstance(meta, dict):
                    raise ValueError("metadata is not a mapping")
        except (yaml.YAMLError, ValueError) as e:
            return self._json({"errors": [{"message": str(e).splitlines()[0]}], "warnings": []}, 400)
        self._json({"errors": [], "warnings": []})

    def create_repo(self, query) -> None:
        payload = json.loads(self._body())
        if not self._authorised():
            return self._error(401, "Invalid credentials in Authorization header")
        rtype = (payload.get("type") or "model") + "s"
        org, name = payload.get("organization") or "tester", payload["name"]
        folder = self.server.hub.root / rtype / org / name
        url = f"{self.server.hub.url}/{PREFIX[TYPES[rtype]]}{org}/{name}"
        with self.server.hub.lock:
            if (folder / "commits.json").is_file():
                return self._json({"error": "You already created this repo", "url": url}, 409,
                                  {"X-Error-Message": "You already created this repo"})
            folder.mkdir(parents=True)
            repo = Repo(folder)
            (folder / "commits.json").write_text("[]")
            (folder / "meta.json").write_text(json.dumps({"private": payload.get("visibility") == "private"
                                                           or bool(payload.get("private"))}))
            data = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.parquet filter=lfs diff=lfs merge=lfs -text\n"
            sha = repo.put_blob(data)
            repo.add_commit("initial commit", {".gitattributes": {"sha256": sha, "size": len(data),
                                                                  "git_oid": git_blob_oid(data), "lfs": False}})
        self._json({"url": url, "name": f"{org}/{name}"})

    def repo_info(self, query, rtype, org, name, rev="main") -> None:
        repo = self._repo(rtype, org, name)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        commit = self._revision(repo, rev)
        if commit is None:
            return
        siblings = []
        for path, meta in sorted(commit["files"].items()):
            sib = {"rfilename": path, "size": meta["size"], "blobId": meta["git_oid"]}
            if meta["lfs"]:
                sib["lfs"] = {"sha256": meta["sha256"], "size": meta["size"], "pointerSize": 134}
            siblings.append(sib)
        private = json.loads((repo.folder / "meta.json").read_text())["private"]
        self._json({"id": f"{org}/{name}", "_id": commit["oid"][:24], "author": org, "sha": commit["oid"],
                    "private": private, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
                    "tags": [], "siblings": siblings, "lastModified": commit["date"], "createdAt": commit["date"],
                    "usedStorage": sum(m["size"] for m in commit["files"].values())})

    def tree(self, query, rtype, org, name, rev, sub="") -> None:
        repo = self._repo(rtype, org, name)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        commit = self._revision(repo, rev)
        if commit is None:
            return
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries = _tree(commit["files"], sub or "", recursive)
        if sub and not entries and sub.strip("/") not in commit["files"]:
            return self._error(404, f"{sub} not found", "EntryNotFound")
        self._json(entries)

    def paths_info(self, query, rtype, org, name, rev) -> None:
        body = self._body().decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body).get("paths", [])
        else:
            paths = parse_qs(body).get("paths", [])
        repo = self._repo(rtype, org, name)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        commit = self._revision(repo, rev)
        if commit is None:
            return
        files, out = commit["files"], []
        for p in paths:
            p = p.strip("/")
            if p in files:
                out.append(_file_entry(p, files[p]))
            elif any(f.startswith(p + "/") for f in files) or p == "":
                out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p})
        self._json(out)

    def preupload(self, query, rtype, org, name, rev) -> None:
        payload = json.loads(self._body())
        if not self._authorised():
            return self._error(401, "Invalid credentials in Authorization header")
        repo = self._repo(rtype, org, name)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        head = repo.head(unquote(rev)) or {"files": {}}
        out = []
        for f in payload["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = f["path"].endswith(LFS_SUFFIXES) or b"\0" in sample or f["size"] > 1_000_000
            old = head["files"].get(f["path"])
            oid = None if old is None else (old["sha256"] if old["lfs"] else old["git_oid"])
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json({"files": out, "commitOid": head.get("oid")})

    def lfs_batch(self, query, org, name, prefix="") -> None:
        payload = json.loads(self._body())
        if not self._authorised():
            return self._error(401, "Invalid credentials in Authorization header")
        rtype = (prefix or "models/").rstrip("/")
        if self._repo(rtype, org, name) is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        base = f"{self.server.hub.url}/lfs-upload/{rtype}/{org}/{name}"
        objects = []
        for o in payload["objects"]:
            have = (self.server.hub.root / rtype / org / name / "blobs" / o["oid"]).is_file()
            obj = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if not have:
                obj["actions"] = {"upload": {"href": f"{base}/{o['oid']}"},
                                  "verify": {"href": f"{base}/{o['oid']}/verify"}}
            objects.append(obj)
        self._json({"transfer": "basic", "objects": objects}, headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, query, rtype, org, name, oid) -> None:
        data = self._body()
        repo = self._repo(rtype, org, name)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        if hashlib.sha256(data).hexdigest() != oid:
            return self._error(400, "uploaded content does not match its oid")
        repo.put_blob(data)
        self._send(200)

    def lfs_verify(self, query, rtype, org, name, oid) -> None:
        payload = json.loads(self._body())
        blob = self.server.hub.root / rtype / org / name / "blobs" / oid
        if not blob.is_file() or blob.stat().st_size != payload.get("size"):
            return self._error(404, "object not stored")
        self._json({"ok": True})

    def commit(self, query, rtype, org, name, rev) -> None:
        lines = [json.loads(ln) for ln in self._body().splitlines() if ln.strip()]
        if not self._authorised():
            return self._error(401, "Invalid credentials in Authorization header")
        hub = self.server.hub
        if hub.faults.pop("commit_500", False):
            return self._error(500, "Internal Error - simulated failure while committing")
        repo = self._repo(rtype, org, name)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        with hub.lock:
            head = repo.head(unquote(rev))
            if head is None:
                return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            files, message = dict(head["files"]), "commit"
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "header":
                    message = value.get("summary") or message
                elif key == "file":
                    data = base64.b64decode(value["content"])
                    files[value["path"]] = {"sha256": repo.put_blob(data), "size": len(data),
                                            "git_oid": git_blob_oid(data), "lfs": False}
                elif key == "lfsFile":
                    blob = repo.blobs / value["oid"]
                    if not blob.is_file():
                        return self._error(400, f"LFS object {value['oid']} was not uploaded")
                    size = blob.stat().st_size
                    pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{value['oid']}\n"
                               f"size {size}\n").encode()
                    files[value["path"]] = {"sha256": value["oid"], "size": size,
                                            "git_oid": git_blob_oid(pointer), "lfs": True}
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    files = {p: m for p, m in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            commit = repo.add_commit(message, files)
        url = f"{hub.url}/{PREFIX[TYPES[rtype]]}{org}/{name}/commit/{commit['oid']}"
        self._json({"commitUrl": url, "commitOid": commit["oid"], "success": True})

    def resolve(self, query, org, name, rev, file, prefix="") -> None:
        rtype = (prefix or "models/").rstrip("/")
        repo = self._repo(rtype, org, name)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        commit = self._revision(repo, rev)
        if commit is None:
            return
        meta = commit["files"].get(file)
        if meta is None:
            return self._error(404, "Entry not found", "EntryNotFound")
        data = (repo.blobs / meta["sha256"]).read_bytes()
        etag = f'"{meta["sha256"] if meta["lfs"] else meta["git_oid"]}"'
        headers = {"X-Repo-Commit": commit["oid"], "ETag": etag, "Accept-Ranges": "bytes"}
        if meta["lfs"]:
            headers.update({"X-Linked-Etag": etag, "X-Linked-Size": str(meta["size"])})
        start, end, code = 0, len(data) - 1, 200
        rng = self.headers.get("Range")
        if rng:
            m = re.match(r"bytes=(\d*)-(\d*)$", rng.strip())
            if not m:
                return self._error(416, "bad range")
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), len(data) - 1) if m.group(2) else len(data) - 1
            else:
                start = max(0, len(data) - int(m.group(2)))
            if start >= len(data) and len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            code = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        body = data[start:end + 1]
        hub = self.server.hub
        cut = hub.faults.get("truncate")
        if self.command == "GET" and cut and file.endswith(cut) and len(body) > 1:
            hub.faults.pop("truncate", None)
            self.send_response(code)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self._send(code, body, headers, ctype="application/octet-stream")


_SEG = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_ROUTES = [(re.compile(p), h) for p, h in (
    (r"^/api/whoami-v2$", "whoami"),
    (r"^/api/validate-yaml$", "validate_yaml"),
    (r"^/api/repos/create$", "create_repo"),
    (rf"^/api/(?P<rtype>models|datasets|spaces)/(?P<org>{_SEG})/(?P<name>{_SEG})(?:/revision/(?P<rev>[^/]+))?$", "repo_info"),
    (rf"^/api/(?P<rtype>models|datasets|spaces)/(?P<org>{_SEG})/(?P<name>{_SEG})/tree/(?P<rev>[^/]+)(?:/(?P<sub>.*))?$", "tree"),
    (rf"^/api/(?P<rtype>models|datasets|spaces)/(?P<org>{_SEG})/(?P<name>{_SEG})/paths-info/(?P<rev>[^/]+)$", "paths_info"),
    (rf"^/api/(?P<rtype>models|datasets|spaces)/(?P<org>{_SEG})/(?P<name>{_SEG})/preupload/(?P<rev>[^/]+)$", "preupload"),
    (rf"^/api/(?P<rtype>models|datasets|spaces)/(?P<org>{_SEG})/(?P<name>{_SEG})/commit/(?P<rev>[^/]+)$", "commit"),
    (rf"^/(?P<prefix>datasets/|spaces/)?(?P<org>{_SEG})/(?P<name>{_SEG})\.git/info/lfs/objects/batch$", "lfs_batch"),
    (rf"^/lfs-upload/(?P<rtype>models|datasets|spaces)/(?P<org>{_SEG})/(?P<name>{_SEG})/(?P<oid>[0-9a-f]{{64}})$", "lfs_put"),
    (rf"^/lfs-upload/(?P<rtype>models|datasets|spaces)/(?P<org>{_SEG})/(?P<name>{_SEG})/(?P<oid>[0-9a-f]{{64}})/verify$", "lfs_verify"),
    (rf"^/(?P<prefix>datasets/|spaces/)?(?P<org>{_SEG})/(?P<name>{_SEG})/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", "resolve"),
)]
_METHODS = {"whoami": ("GET",), "validate_yaml": ("POST",), "create_repo": ("POST",), "repo_info": ("GET",),
            "tree": ("GET",), "paths_info": ("POST",), "preupload": ("POST",), "commit": ("POST",),
            "lfs_batch": ("POST",), "lfs_put": ("PUT",), "lfs_verify": ("POST",), "resolve": ("GET", "HEAD")}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: "HubServer"


class HubServer:
    """Start with :meth:`start` (binds 127.0.0.1 on a free port), stop with :meth:`stop`."""

    def __init__(self, root: Path, token: str = "hf_test_token"):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.faults: dict = {}
        self.log: list[tuple[str, str, str | None]] = []
        self.errors: list[str] = []   # server-side exceptions (a test can assert there were none)
        self.lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> "HubServer":
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.hub = self
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = None

    def client_env(self, base: dict, home: Path) -> dict:
        """An environment for a client subprocess: online, this endpoint, a token, plain LFS."""
        env = {k: v for k, v in base.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        env.pop("TRANSFORMERS_OFFLINE", None)
        env.update(HF_ENDPOINT=self.url, HF_HUB_OFFLINE="0", HF_HOME=str(home), HF_TOKEN=self.token,
                   HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_UPDATE_CHECK="1",
                   HF_HUB_ETAG_TIMEOUT="10", HF_HUB_DOWNLOAD_TIMEOUT="20")
        return env

    # helpers for assertions
    def repo_files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        repo = Repo(self.root / (repo_type + "s") / repo_id)
        return {p: (repo.blobs / m["sha256"]).read_bytes() for p, m in repo.head()["files"].items()}

    def commits(self, repo_id: str, repo_type: str = "model") -> list[dict]:
        folder = self.root / (repo_type + "s") / repo_id
        return Repo(folder).commits if (folder / "commits.json").is_file() else []

    def create(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model") -> None:
        """Make a repo holding ``files`` directly on disk (for repos no client would push)."""
        folder = self.root / (repo_type + "s") / repo_id
        folder.mkdir(parents=True)
        (folder / "commits.json").write_text("[]")
        (folder / "meta.json").write_text(json.dumps({"private": False}))
        repo = Repo(folder)
        repo.add_commit("files", {p: {"sha256": repo.put_blob(d), "size": len(d), "git_oid": git_blob_oid(d),
                                      "lfs": p.endswith(LFS_SUFFIXES)} for p, d in files.items()})

    def delete_repo(self, repo_id: str, repo_type: str = "model") -> None:
        shutil.rmtree(self.root / (repo_type + "s") / repo_id, ignore_errors=True)
