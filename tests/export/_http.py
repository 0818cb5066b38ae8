"""HTTP helpers for the serving tests (127.0.0.1 only)."""
import http.client
import json
import os
import shutil
import socket


def call(port, method, path, body=None, raw=None, conn=None, parse=json.loads):
  """`(status, parsed JSON body)` of one request (a new connection unless `conn` is given)."""
  c = conn or http.client.HTTPConnection('127.0.0.1', port, timeout=60)
  data = raw if raw is not None else (None if body is None else json.dumps(body))
  c.request(method, path, body=data, headers={'Content-Type': 'application/json'})
  r = c.getresponse()
  out = r.status, parse(r.read())
  if conn is None:
    c.close()
  return out


def exchange(port, data: bytes, timeout=30.0) -> bytes:
  """Sends raw bytes and reads until the server closes the connection (or `timeout`)."""
  with socket.create_connection(('127.0.0.1', port), timeout=timeout) as s:
    s.sendall(data)
    chunks = []
    while True:
      try:
        chunk = s.recv(65536)
      except socket.timeout:
        chunks.append(b'<timeout: connection still open>')
        break
      if not chunk:
        break
      chunks.append(chunk)
  return b''.join(chunks)


def add_version(export_path, base, version):
  """Copies an export into `base/<version>` atomically (as the exporters write them)."""
  tmp = os.path.join(base, f'.tmp-{version}')
  shutil.copytree(export_path, tmp)
  os.rename(tmp, os.path.join(base, str(version)))
  return os.path.join(base, str(version))


def wait_until_serving(proc) -> tuple[int, str]:
  """Reads a server process's output up to its `Serving ... at http://HOST:PORT` line:
  `(port, line)`."""
  line = ''
  while 'Serving' not in line:
    line = proc.stdout.readline()
    assert line, 'the server exited before serving'
  return int(line.rsplit(':', 1)[1]), line
