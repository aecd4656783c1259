"""A small local Hugging Face Hub for tests of what needs real HTTP: the API huggingface_hub uses to create repos
and commit.

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
                else:
                    self._send(404, {"error": f"not implemented: {method} {path}"})

            def _api(self, method, repo_id, rest, body):
                if repo_id not in hub.repos:
                    return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                branches = hub.repos[repo_id]
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
