"""A small local Hugging Face Hub for tests: the HTTP API huggingface_hub uses to create repos, commit, and download.

Every file is committed as a regular (inline base64) file; failures and authentication can be injected.
"""

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import yaml

TOKEN = "hf_local_test_token"


class LocalHub:
    def __init__(self):
        self.repos: dict[str, dict[str, dict]] = {}  # repo_id -> branch -> {"sha", "files"}
        self.fail_commits: list[int] = []  # status codes returned by the next commit calls
        self.fail_always = False
        self.requests: list[tuple[str, str]] = []
        self.commits: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", headers=None, head=False):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                    headers = {"Content-Type": "application/json", **(headers or {})}
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                    return True
                self._send(401, {"error": "Invalid credentials in Authorization header"})
                return False

            def do_HEAD(self):
                self._dispatch("HEAD")

            def do_GET(self):
                self._dispatch("GET")

            def do_POST(self):
                self._dispatch("POST")

            def _dispatch(self, method):
                path = unquote(urlparse(self.path).path)
                hub.requests.append((method, path))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
                parts = path.strip("/").split("/")
                if path == "/api/whoami-v2":
                    if self._authorized():
                        self._send(200, {"name": "tester", "type": "user", "auth": {"type": "access_token"}})
                elif path == "/api/repos/create" and method == "POST":
                    if self._authorized():
                        request = json.loads(body)
                        repo_id = f"{request.get('organization') or 'tester'}/{request['name']}"
                        if repo_id in hub.repos:
                            self._send(409, {"error": "You already created this model repo", "url": f"/{repo_id}"})
                        else:
                            hub.repos[repo_id] = {"main": {"sha": "0" * 40, "files": {}}}
                            self._send(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})
                elif path == "/api/validate-yaml" and method == "POST":
                    content = json.loads(body)["content"]
                    try:
                        yaml.safe_load(content.split("---")[1] if content.startswith("---") else "")
                        self._send(200, {"errors": [], "warnings": []})
                    except yaml.YAMLError as error:
                        self._send(400, {"errors": [{"message": str(error)}], "warnings": []})
                elif parts[:2] == ["api", "models"] and len(parts) >= 4:
                    self._api(method, "/".join(parts[2:4]), parts[4:], body)
                elif len(parts) >= 4 and parts[2] == "resolve":
                    self._resolve(method, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
                else:
                    self._send(404, {"error": f"not implemented: {method} {path}"})

            def _api(self, method, repo_id, rest, body):
                if repo_id not in hub.repos:
                    return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                branches = hub.repos[repo_id]
                if rest and rest[0] == "tree":
                    branch = branches.get(rest[1] if len(rest) > 1 else "main")
                    if branch is None:
                        return self._send(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})
                    prefix = "/".join(rest[2:]).strip("/")
                    entries, folders = [], set()
                    for name, data in sorted(branch["files"].items()):
                        if prefix and not name.startswith(prefix + "/"):
                            continue
                        relative = name[len(prefix) + 1 :] if prefix else name
                        if "/" in relative and "recursive=true" not in self.path.lower():
                            folders.add(f"{prefix}/{relative.split('/')[0]}".strip("/"))
                            continue
                        entries.append(
                            {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        )
                    entries += [{"type": "directory", "path": f, "oid": "0" * 40} for f in sorted(folders)]
                    return self._send(200, entries)
                if not rest or rest[0] == "revision":
                    revision = rest[1] if len(rest) > 1 else "main"
                    branch = branches.get(revision) or next(
                        (b for b in branches.values() if b["sha"] == revision), None
                    )
                    if branch is None:
                        return self._send(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})
                    siblings = [
                        {"rfilename": name, "size": len(data)} for name, data in sorted(branch["files"].items())
                    ]
                    return self._send(
                        200,
                        {
                            "id": repo_id,
                            "modelId": repo_id,
                            "sha": branch["sha"],
                            "private": False,
                            "siblings": siblings,
                            "tags": [],
                            "downloads": 0,
                            "likes": 0,
                        },
                    )
                if rest[0] == "preupload" and method == "POST":
                    files = json.loads(body)["files"]
                    return self._send(
                        200,
                        {
                            "files": [
                                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                                for f in files
                            ]
                        },
                    )
                if rest[0] == "branch" and method == "POST":
                    if not self._authorized():
                        return None
                    branches[rest[1]] = {"sha": branches["main"]["sha"], "files": dict(branches["main"]["files"])}
                    return self._send(200, {})
                if rest[0] == "commit" and method == "POST":
                    if not self._authorized():
                        return None
                    if hub.fail_always or hub.fail_commits:
                        status = 500 if hub.fail_always else hub.fail_commits.pop(0)
                        return self._send(status, {"error": "Internal Error - We're working hard to fix this"})
                    revision = rest[1] if len(rest) > 1 else "main"
                    branch = branches.setdefault(revision, {"sha": "0" * 40, "files": {}})
                    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                    for line in lines:
                        if line["key"] == "file":
                            branch["files"][line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                        elif line["key"] == "deletedFile":
                            branch["files"].pop(line["value"]["path"], None)
                    branch["sha"] = hashlib.sha1(json.dumps(sorted(branch["files"])).encode() + body).hexdigest()
                    hub.commits.append(
                        {
                            "repo_id": repo_id,
                            "revision": revision,
                            "header": lines[0]["value"],
                            "files": [x["value"]["path"] for x in lines if x["key"] == "file"],
                        }
                    )
                    return self._send(
                        200,
                        {
                            "commitUrl": f"/{repo_id}/commit/{branch['sha']}",
                            "commitOid": branch["sha"],
                            "pullRequestUrl": None,
                        },
                    )
                return self._send(404, {"error": f"not implemented: {method} {rest}"})

            def _resolve(self, method, repo_id, revision, filename):
                branches = hub.repos.get(repo_id)
                if branches is None:
                    return self._send(
                        404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}, head=method == "HEAD"
                    )
                branch = branches.get(revision) or next((b for b in branches.values() if b["sha"] == revision), None)
                if branch is None or filename not in branch["files"]:
                    code = "RevisionNotFound" if branch is None else "EntryNotFound"
                    return self._send(404, {"error": "not found"}, {"X-Error-Code": code}, head=method == "HEAD")
                data = branch["files"][filename]
                headers = {
                    "X-Repo-Commit": branch["sha"],
                    "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                    "Content-Type": "application/octet-stream",
                }
                return self._send(200, data, headers, head=method == "HEAD")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
