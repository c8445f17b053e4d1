/*
 * task_scrape_page.c - http.scrape's parse of a fetched page (task_scrape.h): the
 * Content-Type check and the charset, libxml2's HTML parser, one walk of the tree for the
 * title, description, canonical, lang, <base> and the anchors, the links made absolute and
 * filtered, the XPath extracts, and the result with its caps (task_scrape.c's essay says
 * what each field means).
 *
 * Everything here runs on the task's greenlet and never yields: the parser context, the
 * document and the XPath context are made and freed inside one call, so no two greenlets
 * share them. libxml2's per-thread error handlers are set to silent ones before every
 * parse.
 */
#include "task.h"
#include "task_internal.h"
#include "task_scrape.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/HTMLparser.h>
#include <libxml/encoding.h>
#include <libxml/parser.h>
#include <libxml/xmlerror.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#define SCRAPE_MAX_LINKS 10000
#define SCRAPE_MAX_VALUES 1000
#define SCRAPE_MAX_VALUE_BYTES (16 << 10)
#define SCRAPE_MAX_EXTRACT_BYTES (1 << 20)

/* Where libxml2's other messages go on this thread: nowhere (the parse's own errors are
 * switched off by its options, but an encoding error is reported on the thread's
 * handlers, whose default writes to stderr). Per thread in libxml2: set before every
 * parse, which costs two stores. */
static void silent(void *ctx, const char *msg, ...) {
    (void)ctx, (void)msg;
}

static void silent_structured(void *ctx, xmlErrorPtr e) {
    (void)ctx, (void)e;
}

void task__scrape_quiet(void) {
    /* libxml2's global tables, made on the first use rather than at start-up: a worker
     * that never scrapes does not pay their memory. Once, whichever thread is first. */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, xmlInitParser);
    xmlSetGenericErrorFunc(NULL, silent);
    xmlSetStructuredErrorFunc(NULL, silent_structured);
}

/* ---- the response's type and charset -------------------------------------------------- */

/* The last Content-Type header of raw header lines, its media type lower-cased into type
 * and its charset parameter into charset ("" when absent). False when there is none. */
static bool content_type(const char *raw, size_t len, char *type, size_t tlen, char *charset,
                         size_t clen) {
    const char *value = NULL, *end = NULL;
    for (const char *line = raw; raw != NULL && line < raw + len;) {
        const char *eol = memchr(line, '\n', (size_t)(raw + len - line));
        if (eol == NULL)
            eol = raw + len;
        if ((size_t)(eol - line) > 13 && strncasecmp(line, "content-type:", 13) == 0) {
            value = line + 13;
            end = eol;
        }
        line = eol + 1;
    }
    type[0] = charset[0] = '\0';
    if (value == NULL)
        return false;
    while (value < end && (*value == ' ' || *value == '\t'))
        value++;
    size_t n = 0;
    const char *p = value;
    for (; p < end && *p != ';' && *p != ' ' && *p != '\t' && *p != '\r'; p++)
        if (n + 1 < tlen)
            type[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    type[n] = '\0';
    /* Parameters: ; name=value or ; name="value". */
    while (p < end) {
        if (*p != ';') {
            p++;
            continue;
        }
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (end - p > 8 && strncasecmp(p, "charset=", 8) == 0) {
            p += 8;
            if (p < end && *p == '"')
                p++;
            size_t m = 0;
            for (; p < end && *p != '"' && *p != ';' && *p != ' ' && *p != '\r'; p++)
                if (m + 1 < clen)
                    charset[m++] = *p;
            charset[m] = '\0';
        }
    }
    return true;
}

static bool is_utf8(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n = c < 0x80             ? 0
                   : (c & 0xE0) == 0xC0 ? 1
                   : (c & 0xF0) == 0xE0 ? 2
                   : (c & 0xF8) == 0xF0 ? 3
                                        : 9;
        if (n == 9 || (n == 1 && c < 0xC2) || i + n >= len + (n == 0))
            return false;
        for (size_t k = 1; k <= n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += n + 1;
    }
    return true;
}

/* The encoding to tell libxml2, or NULL to let it read the document's <meta>. */
static const char *encoding_for(const char *charset, const char *body, size_t len) {
    if (charset[0] != '\0') {
        xmlCharEncodingHandlerPtr h = xmlFindCharEncodingHandler(charset);
        if (h != NULL) {
            xmlCharEncCloseFunc(h);
            return charset;
        }
    }
    return is_utf8((const unsigned char *)body, len) ? "UTF-8" : NULL;
}

/* ---- the document --------------------------------------------------------------------- */

/* What one walk of the tree finds. Strings are libxml2's (xmlFree them). */
typedef struct page {
    xmlChar *title, *description, *canonical, *lang, *base;
    xmlNodePtr *anchors; /* <a> and <area> with an href, in document order */
    size_t nanchors, cap;
    bool anchors_cut;
} page;

static void page_free(page *p) {
    xmlFree(p->title);
    xmlFree(p->description);
    xmlFree(p->canonical);
    xmlFree(p->lang);
    xmlFree(p->base);
    free(p->anchors);
}

static bool name_is(xmlNodePtr n, const char *name) {
    return n->name != NULL && strcmp((const char *)n->name, name) == 0;
}

/* Whether the space-separated tokens of list hold token, ignoring case. */
static bool has_token(const xmlChar *list, const char *token) {
    size_t tl = strlen(token);
    for (const char *p = (const char *)list; p != NULL && *p;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f')
            p++;
        const char *e = p;
        while (*e && *e != ' ' && *e != '\t' && *e != '\n' && *e != '\r' && *e != '\f')
            e++;
        if ((size_t)(e - p) == tl && strncasecmp(p, token, tl) == 0)
            return true;
        p = e;
    }
    return false;
}

/* Collapse runs of blanks to one space and trim, in place. */
static void collapse(xmlChar *s) {
    if (s == NULL)
        return;
    char *r = (char *)s, *w = (char *)s;
    bool blank = true; /* drop leading blanks */
    for (; *r; r++) {
        bool b = *r == ' ' || *r == '\t' || *r == '\n' || *r == '\r' || *r == '\f';
        if (b) {
            if (!blank)
                *w++ = ' ';
            blank = true;
        } else {
            *w++ = *r;
            blank = false;
        }
    }
    if (w > (char *)s && w[-1] == ' ')
        w--;
    *w = '\0';
}

static void visit(page *p, xmlNodePtr n) {
    if (name_is(n, "a") || name_is(n, "area")) {
        if (xmlHasProp(n, (const xmlChar *)"href") == NULL)
            return;
        if (p->nanchors == SCRAPE_MAX_LINKS * 4) { /* duplicates and non-http links too */
            p->anchors_cut = true;
            return;
        }
        if (p->nanchors == p->cap) {
            size_t cap = p->cap ? 2 * p->cap : 64;
            xmlNodePtr *grown = realloc(p->anchors, cap * sizeof *grown);
            if (grown == NULL) {
                p->anchors_cut = true;
                return;
            }
            p->anchors = grown;
            p->cap = cap;
        }
        p->anchors[p->nanchors++] = n;
    } else if (name_is(n, "title") && p->title == NULL) {
        p->title = xmlNodeGetContent(n);
        collapse(p->title);
    } else if (name_is(n, "meta") && p->description == NULL) {
        xmlChar *name = xmlGetProp(n, (const xmlChar *)"name");
        if (name != NULL && strcasecmp((const char *)name, "description") == 0)
            p->description = xmlGetProp(n, (const xmlChar *)"content");
        xmlFree(name);
        collapse(p->description);
    } else if (name_is(n, "link") && p->canonical == NULL) {
        xmlChar *rel = xmlGetProp(n, (const xmlChar *)"rel");
        if (rel != NULL && has_token(rel, "canonical"))
            p->canonical = xmlGetProp(n, (const xmlChar *)"href");
        xmlFree(rel);
    } else if (name_is(n, "base") && p->base == NULL) {
        p->base = xmlGetProp(n, (const xmlChar *)"href");
    } else if (name_is(n, "html") && p->lang == NULL) {
        p->lang = xmlGetProp(n, (const xmlChar *)"lang");
        collapse(p->lang);
    }
}

/* Every element, in document order, without recursion (a deep document must not use up a
 * greenlet's small stack). */
static void walk(page *p, xmlNodePtr root) {
    xmlNodePtr n = root;
    while (n != NULL) {
        if (n->type == XML_ELEMENT_NODE)
            visit(p, n);
        if (n->children != NULL && n->type == XML_ELEMENT_NODE) {
            n = n->children;
            continue;
        }
        while (n != NULL && n->next == NULL)
            n = n->parent == NULL || n->parent->type == XML_DOCUMENT_NODE ||
                        n->parent->type == XML_HTML_DOCUMENT_NODE
                    ? NULL
                    : n->parent;
        if (n != NULL)
            n = n->next;
    }
}

/* ---- links ----------------------------------------------------------------------------- */

/* href resolved against base (a handle holding an absolute URL), as an absolute http(s)
 * URL without fragment and credentials: a curl_free'd string, or NULL when it is not one. */
static char *resolve(CURLU *base, const char *href) {
    while (*href == ' ' || *href == '\t' || *href == '\n' || *href == '\r' || *href == '\f')
        href++;
    size_t n = strlen(href);
    while (n > 0 && (href[n - 1] == ' ' || href[n - 1] == '\t' || href[n - 1] == '\n' ||
                     href[n - 1] == '\r' || href[n - 1] == '\f'))
        n--;
    char *trimmed = strndup(href, n);
    CURLU *u = trimmed ? curl_url_dup(base) : NULL;
    char *scheme = NULL, *host = NULL, *out = NULL;
    /* "" and "#x" are the base itself (RFC 3986 5.2.2); curl 7.88 drops its last path
     * segment for them. */
    bool self = trimmed != NULL && (trimmed[0] == '\0' || trimmed[0] == '#');
    if (u != NULL &&
        (self || curl_url_set(u, CURLUPART_URL, trimmed, CURLU_URLENCODE) == CURLUE_OK) &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0)) {
        curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
        curl_url_set(u, CURLUPART_USER, NULL, 0);
        curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
        /* Host names are case-insensitive: one spelling, so that duplicates are found. */
        if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
            for (char *c = host; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c = (char)(*c + 32);
            curl_url_set(u, CURLUPART_HOST, host, 0);
        }
        if (curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
            out = NULL;
    }
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    free(trimmed);
    return out;
}

char *task__scrape_normalize(const char *url) {
    CURLU *u = curl_url();
    char *out = NULL;
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, CURLU_URLENCODE) == CURLUE_OK)
        out = resolve(u, ""); /* the URL itself, as a link to it would come out */
    curl_url_cleanup(u);
    return out;
}

static char *host_of(CURLU *u) {
    char *host = NULL;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        return NULL;
    return host;
}

/* The links of p, filtered, into the array links (and the crawl's list). */
static int collect_links(const scrape_opts *o, const page *p, CURLU *base, const char *host,
                         json_t *links, bool *cut) {
    json_t *seen = json_object();
    if (seen == NULL)
        return -ENOMEM;
    int rc = 0;
    *cut = p->anchors_cut;
    for (size_t i = 0; i < p->nanchors && rc == 0; i++) {
        xmlChar *href = xmlGetProp(p->anchors[i], (const xmlChar *)"href");
        char *url = href ? resolve(base, (const char *)href) : NULL;
        xmlFree(href);
        if (url == NULL)
            continue;
        bool keep = json_object_get(seen, url) == NULL;
        if (keep && o->same_host) {
            CURLU *u = curl_url();
            char *h = NULL;
            keep = u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
                   (h = host_of(u)) != NULL && host != NULL && strcasecmp(h, host) == 0;
            curl_free(h);
            curl_url_cleanup(u);
        }
        if (keep && o->has_pattern)
            keep = regexec(&o->pattern, url, 0, NULL, 0) == 0;
        if (keep && json_array_size(links) == SCRAPE_MAX_LINKS) {
            *cut = true;
            keep = false;
        }
        if (keep) {
            json_t *s = json_string(url);
            if (s == NULL || json_object_set_new(seen, url, json_true()) != 0 ||
                json_array_append_new(links, s) != 0)
                rc = -ENOMEM;
        }
        curl_free(url);
    }
    json_decref(seen);
    return rc;
}

/* ---- extract --------------------------------------------------------------------------- */

/* A JSON string of s trimmed of blanks and cut to SCRAPE_MAX_VALUE_BYTES on a UTF-8
 * boundary (*cut set when it was). */
static json_t *value_string(const char *s, bool *cut) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r' ||
                     s[n - 1] == '\f'))
        n--;
    if (n > SCRAPE_MAX_VALUE_BYTES) {
        n = SCRAPE_MAX_VALUE_BYTES;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
        *cut = true;
    }
    return task__text(s, n);
}

static int extract(const task_call *call, const scrape_opts *o, xmlDocPtr doc, json_t *out,
                   bool *cut, task_error *err) {
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    if (ctx == NULL)
        return task_error_set(err, "MemoryError", "%s: out of memory", call->name);
    task__xpath_err xe = {""};
    ctx->error = task__xpath_on_error;
    ctx->userData = &xe;
    size_t total = 0;
    int rc = 0;
    for (size_t i = 0; i < o->nxpath && rc == 0; i++) {
        json_t *list = json_array();
        if (list == NULL || json_object_set_new(out, o->xpath[i].name, list) != 0) {
            rc = task_error_set(err, "MemoryError", "%s: out of memory", call->name);
            break;
        }
        xe.text[0] = '\0';
        xmlXPathObjectPtr r = doc ? xmlXPathCompiledEval(o->xpath[i].comp, ctx) : NULL;
        if (r == NULL && doc != NULL) {
            rc = task_error_invalid(err, "ValueError",
                                    "%s: kwarg xpath[\"%.64s\"] failed on the page: %s", call->name,
                                    o->xpath[i].name, xe.text[0] ? xe.text : "no reason given");
            break;
        }
        if (r == NULL)
            continue;
        if (r->type == XPATH_NODESET) {
            xmlNodeSetPtr set = r->nodesetval;
            int count = set ? set->nodeNr : 0;
            for (int k = 0; k < count; k++) {
                if (json_array_size(list) == SCRAPE_MAX_VALUES ||
                    total >= SCRAPE_MAX_EXTRACT_BYTES) {
                    *cut = true;
                    break;
                }
                xmlChar *text = xmlNodeGetContent(set->nodeTab[k]);
                json_t *s = value_string(text ? (const char *)text : "", cut);
                xmlFree(text);
                if (s == NULL || json_array_append_new(list, s) != 0) {
                    rc = task_error_set(err, "MemoryError", "%s: out of memory", call->name);
                    break;
                }
                total += json_string_length(s);
            }
        } else {
            xmlChar *text = xmlXPathCastToString(r);
            json_t *s = value_string(text ? (const char *)text : "", cut);
            xmlFree(text);
            if (s == NULL || json_array_append_new(list, s) != 0)
                rc = task_error_set(err, "MemoryError", "%s: out of memory", call->name);
            else
                total += json_string_length(s);
        }
        xmlXPathFreeObject(r);
    }
    xmlXPathFreeContext(ctx);
    return rc;
}

/* ---- the task -------------------------------------------------------------------------- */

static json_t *maybe(const xmlChar *s) {
    return s != NULL ? task__text((const char *)s, strlen((const char *)s)) : json_null();
}

static bool is_html(const char *type) {
    return strcmp(type, "text/html") == 0 || strcmp(type, "application/xhtml+xml") == 0;
}

bool task__scrape_wants(const char *headers, size_t len) {
    char type[128], charset[64];
    return !content_type(headers, len, type, sizeof type, charset, sizeof charset) || is_html(type);
}

int task__scrape_page(const task_call *call, const scrape_opts *o, const task_http_fetched *f,
                      json_t **result, json_t **links_out, task_error *err) {
    char type[128], charset[64];
    *links_out = NULL;
    if (content_type(f->headers, f->headers_len, type, sizeof type, charset, sizeof charset) &&
        !is_html(type))
        return task_error_set(err, "NotHTML",
                              "%s: the response is %s, not HTML (text/html or "
                              "application/xhtml+xml)",
                              call->name, type[0] ? type : "of an empty Content-Type");
    const char *body = f->body ? f->body : "";
    task__scrape_quiet(); /* libxml2 set up (encoding_for asks it about the charset) */
    const char *enc = encoding_for(charset, body, f->body_len);

    htmlParserCtxtPtr pctx = htmlNewParserCtxt();
    if (pctx == NULL)
        return task_error_set(err, "MemoryError", "%s: out of memory", call->name);
    /* An empty body is a page without anything (libxml2 returns no document for it). */
    xmlDocPtr doc = f->body_len == 0
                        ? NULL
                        : htmlCtxtReadMemory(pctx, body, (int)f->body_len, f->url, enc,
                                             HTML_PARSE_RECOVER | HTML_PARSE_NOERROR |
                                                 HTML_PARSE_NOWARNING | HTML_PARSE_NONET);
    page p = {0};
    if (doc != NULL)
        walk(&p, xmlDocGetRootElement(doc));

    int rc = 0;
    CURLU *final = curl_url(), *base = NULL;
    char *host = NULL;
    json_t *res = json_object(), *links = json_array(), *ex = json_object();
    bool links_cut = false, ex_cut = false;
    if (final == NULL || res == NULL || links == NULL || ex == NULL) {
        rc = task_error_set(err, "MemoryError", "%s: out of memory", call->name);
        goto done;
    }
    curl_url_set(final, CURLUPART_URL, f->url, 0);
    host = host_of(final);
    base = curl_url_dup(final);
    if (p.base != NULL) {
        /* <base href> is resolved against the document's URL; an unusable one is ignored. */
        char *b = resolve(final, (const char *)p.base);
        if (b != NULL)
            curl_url_set(base, CURLUPART_URL, b, 0);
        curl_free(b);
    }
    if (base == NULL || collect_links(o, &p, base, host, links, &links_cut) != 0) {
        rc = task_error_set(err, "MemoryError", "%s: out of memory", call->name);
        goto done;
    }
    if ((rc = extract(call, o, doc, ex, &ex_cut, err)) != 0)
        goto done;
    char *canonical = p.canonical ? resolve(base, (const char *)p.canonical) : NULL;
    int bad = json_object_set_new(res, "url", task__http_url_json(f->url));
    bad |= json_object_set_new(res, "status", json_integer(f->status));
    bad |= json_object_set_new(res, "title", maybe(p.title));
    bad |= json_object_set_new(res, "description", maybe(p.description));
    bad |= json_object_set_new(res, "canonical", maybe((const xmlChar *)canonical));
    bad |= json_object_set_new(res, "lang", maybe(p.lang));
    bad |= json_object_set(res, "links", links);
    bad |= json_object_set(res, "extract", ex);
    curl_free(canonical);
    if (links_cut || ex_cut) {
        json_t *cut = json_array();
        if (links_cut)
            bad |= json_array_append_new(cut, json_string("links"));
        if (ex_cut)
            bad |= json_array_append_new(cut, json_string("extract"));
        bad |= json_object_set_new(res, "truncated", cut);
    }
    if (bad) {
        rc = task_error_set(err, "MemoryError", "%s: out of memory", call->name);
        goto done;
    }
    *result = res;
    *links_out = links;
    res = links = NULL;
done:
    json_decref(res);
    json_decref(links);
    json_decref(ex);
    curl_free(host);
    curl_url_cleanup(base);
    curl_url_cleanup(final);
    page_free(&p);
    xmlFreeDoc(doc);
    htmlFreeParserCtxt(pctx);
    return rc;
}
