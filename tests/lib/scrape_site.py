#!/usr/bin/python3
"""A small web site for the http.scrape tests and the crawl benchmark, on loopback.

    scrape_site.py PAGES

Listens on 127.0.0.1 on a free port, prints the port on the first line of stdout, and
serves until killed:

  /site/N          N < PAGES: a generated page whose links lead to pages 2N+1, 2N+2, N+1,
                   0 and N-1 (where they exist; each written twice, once with a fragment
                   and once relative), so that every page is reachable from /site/0
  /_hits           JSON {path: how many GETs it had}, /_hits itself not counted
  /_served         JSON {path: {"bytes": body bytes written, "ended": the last
                   response of the path has ended}} for /huge.bin
  /crawl-fail      links to a page, a 404, a JSON document, a page that hangs and a 503
  /hangs, /hang/N  links to /hang/1 and /hang/2; /hang/N answers after 300 s
  /unavailable     503
  /huge.bin        HUGE_BYTES of application/octet-stream, written 64 KiB at a time
                   until the client goes away
  /utf8, /latin1, /latin1-meta, /latin1-equiv, /bad-utf8, /bad-sjis,
  /broken, /links, /base/dir/page,
  /redirect, /json, /text-no-type, /empty, /big-links  fixed pages for the tests
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGES = int(sys.argv[1]) if len(sys.argv) > 1 else 0
hits = {}
served = {}
lock = threading.Lock()
HUGE_BYTES = 64 << 20

UTF8_TITLE = "Caf\u00e9 \u2014 \u00fcn\u00efcode \u2713"
LATIN1_TITLE = "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e"

FIXED = {
    "/utf8": ("text/html; charset=utf-8",
              ("<!DOCTYPE html><html lang='fr'><head><title>%s</title>"
               "<meta name='description' content='  A  page in\tUTF-8 '>"
               "<link rel='canonical' href='/utf8?canonical=1'></head>"
               "<body><h1>Hello</h1><h1> World </h1><p class=x>p\u00e8re</p></body></html>"
               % UTF8_TITLE).encode("utf-8")),
    "/latin1": ("text/html; charset=ISO-8859-1",
                ("<html><head><title>%s</title></head><body><p>%s</p></body></html>"
                 % (LATIN1_TITLE, LATIN1_TITLE)).encode("latin-1")),
    "/latin1-meta": ("text/html",
                     ("<html><head><meta charset='iso-8859-1'><title>%s</title></head>"
                      "<body></body></html>" % LATIN1_TITLE).encode("latin-1")),
    "/latin1-equiv": ("text/html",
                      ("<html><head><meta http-equiv='Content-Type' "
                       "content='text/html; charset=ISO-8859-1'><title>%s</title></head>"
                       "<body></body></html>" % LATIN1_TITLE).encode("latin-1")),
    "/bad-utf8": ("text/html; charset=utf-8",
                  ("<html><head><title>%s</title></head></html>" % LATIN1_TITLE).encode("latin-1")),
    "/bad-sjis": ("text/html",
                  b"<html><head><meta http-equiv='content-type' content='text/html; "
                  b"charset=shift_jis'><title>\x82\xa0\xff\xff\x80</title></head></html>"),
    "/broken": ("text/html",
                b"<html><head><title>Broken <b>page</title><body><div><p>one<p>two"
                b"<a href='/x'>x<a href=\"/y\">y</span></td></table><<>>&bogus; "
                b"<a href=/z>z<h1>Head\x00ing</h2><a href='/x#again'>"),
    "/links": ("text/html",
               b"<html><body><a href='/a'>a</a><a href='b'>b</a><a href='./b#frag'>b2</a>"
               b"<a href='../c?q=1#top'>c</a><a href='http://Other.example:8080/d'>d</a>"
               b"<a href='https://user:pw@secure.example/e'>e</a>"
               b"<a href='mailto:me@example.com'>m</a><a href='javascript:void(0)'>j</a>"
               b"<a href='ftp://example.com/f'>f</a><a href='#only-frag'>self</a>"
               b"<a href=' /spaced '>s</a><a>no href</a>"
               b"<map><area href='/area' alt=''></map><a href='/a'>dup</a></body></html>"),
    "/base/dir/page": ("text/html",
                       b"<html><head><base href='/other/root/'></head><body>"
                       b"<a href='x'>x</a><a href='../y'>y</a><a href='/z'>z</a>"
                       b"<a href='//cdn.example/w'>w</a></body></html>"),
    "/json": ("application/json", b'{"not": "html"}'),
    "/text-no-type": (None, b"<html><head><title>No type</title></head></html>"),
    "/empty": ("text/html", b""),
    "/crawl-fail": ("text/html",
                    b"<html><body><a href='/site/1'>ok</a><a href='/missing'>404</a>"
                    b"<a href='/json'>json</a><a href='/hang/1'>hang</a>"
                    b"<a href='/unavailable'>503</a></body></html>"),
    "/hangs": ("text/html",
               b"<html><body><a href='/hang/1'>1</a><a href='/hang/2'>2</a></body></html>"),
    "/big-links": ("text/html",
                   b"<html><body>" + b"".join(b"<a href='/p%d'>p</a>" % i
                                              for i in range(12000)) + b"</body></html>"),
}


def site_page(n):
    links = []
    for m in (2 * n + 1, 2 * n + 2, n + 1, 0, n - 1):
        if 0 <= m < PAGES:
            links.append("<a href='/site/%d#top'>%d</a><a href='%d'>%d again</a>" % (m, m, m, m))
    return ("<html><head><title>Page %d</title></head><body><h1>Page %d</h1>%s</body></html>"
            % (n, n, "".join(links))).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, ctype, body, extra=()):
        self.send_response(status)
        if ctype is not None:
            self.send_header("Content-Type", ctype)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def huge(self, path):
        with lock:
            served[path] = {"bytes": 0, "ended": False}
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(HUGE_BYTES))
        self.end_headers()
        chunk = b"\0" * 65536
        sent = 0
        try:
            while sent < HUGE_BYTES:
                self.wfile.write(chunk)
                sent += len(chunk)
                with lock:
                    served[path]["bytes"] = sent
        except OSError:
            self.close_connection = True
        with lock:
            served[path]["ended"] = True

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/_hits":
            with lock:
                body = json.dumps(hits).encode()
            return self.send(200, "application/json", body)
        with lock:
            hits[path] = hits.get(path, 0) + 1
        if path == "/_served":
            with lock:
                body = json.dumps(served).encode()
            return self.send(200, "application/json", body)
        if path == "/huge.bin":
            return self.huge(path)
        if path.startswith("/hang/"):
            time.sleep(300)
            return self.send(200, "text/html", b"<html><title>Late</title></html>")
        if path == "/unavailable":
            return self.send(503, "text/html", b"<html><title>Unavailable</title></html>")
        if path == "/redirect":
            return self.send(302, "text/html", b"", [("Location", "/base/dir/page")])
        if path in FIXED:
            ctype, body = FIXED[path]
            return self.send(200, ctype, body)
        if path.startswith("/site/"):
            try:
                n = int(path[6:])
            except ValueError:
                n = -1
            if 0 <= n < PAGES:
                return self.send(200, "text/html; charset=utf-8", site_page(n))
        return self.send(404, "text/html", b"<html><title>Not found</title></html>")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
