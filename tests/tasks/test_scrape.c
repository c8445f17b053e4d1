/*
 * test_scrape.c - the http.scrape task against a generated site on loopback
 * (tests/lib/scrape_site.py): what a page gives (title, description, canonical, lang,
 * links, extract), charsets converted to UTF-8, broken HTML, relative and base-href links,
 * redirects, the link filters, NotHTML, the caps, and each bad keyword argument.
 *
 * Each test starts its own site and runs the task on the main greenlet of a fresh hub
 * (task_run.h). The crawl (follow) needs workers and Redis: test_e2e_scrape.c.
 */
#include "scrape_site.h"
#include "task_internal.h"
#include "task_run.h"

#include <fcntl.h>
#include <unistd.h>

static scrape_site site;

static void start(void) {
    ASSERT_EQ(green_http_global_init(), 0);
    scrape_site_start(&site, 4);
}

static void stop(void) {
    scrape_site_stop(&site);
    task_http_cleanup();
    task_registry_clear();
    green_http_global_cleanup();
}

static task_outcome scrape(const char *path, const char *kwargs) {
    char args[600];
    snprintf(args, sizeof args, "[\"%s\"]", scrape_site_url(&site, path));
    return task_run("http.scrape", args, kwargs);
}

static const char *str(const json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

/* The JSON text of the result's links, with the site's address as "S". */
static char *links_text(const json_t *result) {
    char *text = json_dumps(json_object_get(result, "links"), JSON_COMPACT);
    char site_url[64];
    snprintf(site_url, sizeof site_url, "http://127.0.0.1:%d", site.port);
    size_t n = strlen(site_url);
    for (char *p = strstr(text, site_url); p != NULL; p = strstr(p + 1, site_url)) {
        p[0] = 'S';
        memmove(p + 1, p + n, strlen(p + n) + 1);
    }
    return text;
}

#define ASSERT_LINKS(result, expected)                                                             \
    do {                                                                                           \
        char *got__ = links_text(result);                                                          \
        ASSERT_STREQ(got__, expected);                                                             \
        free(got__);                                                                               \
    } while (0)

/* ---- what a page gives --------------------------------------------------------------- */

TEST(test_utf8_page_gives_title_description_canonical_lang_and_extract) {
    start();
    task_outcome o =
        scrape("/utf8", "{\"xpath\": {\"h1\": \"//h1/text()\", \"p\": \"//p[@class='x']\","
                        " \"n\": \"count(//h1)\", \"none\": \"//h6\"}}");
    ASSERT_EQ(o.rc, 0);
    ASSERT_STREQ(str(o.result, "url"), scrape_site_url(&site, "/utf8"));
    ASSERT_EQ(json_integer_value(json_object_get(o.result, "status")), 200);
    ASSERT_STREQ(str(o.result, "title"), "Caf\xc3\xa9 \xe2\x80\x94 \xc3\xbcn\xc3\xaf"
                                         "code \xe2\x9c\x93");
    ASSERT_STREQ(str(o.result, "description"), "A page in UTF-8");
    ASSERT_STREQ(str(o.result, "canonical"), scrape_site_url(&site, "/utf8?canonical=1"));
    ASSERT_STREQ(str(o.result, "lang"), "fr");
    ASSERT_JSON(json_object_get(o.result, "extract"),
                "{\"h1\": [\"Hello\", \"World\"], \"p\": [\"p\xc3\xa8re\"], \"n\": [\"2\"],"
                " \"none\": []}");
    ASSERT_JSON(json_object_get(o.result, "links"), "[]");
    ASSERT(json_object_get(o.result, "truncated") == NULL);
    ASSERT(json_object_get(o.result, "crawl") == NULL);
    ASSERT_EQ(json_object_size(o.result), 8);
    task_outcome_free(&o);
    stop();
}

TEST(test_latin1_pages_come_out_as_utf8_from_header_meta_and_http_equiv) {
    start();
    const char *paths[] = {"/latin1", "/latin1-meta", "/latin1-equiv"};
    for (size_t i = 0; i < 3; i++) {
        task_outcome o = scrape(paths[i], "{\"xpath\": {\"p\": \"//p\"}}");
        ASSERT_EQ(o.rc, 0);
        ASSERT_STREQ(str(o.result, "title"), "Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
                                             "e");
        if (i == 0)
            ASSERT_JSON(json_object_get(o.result, "extract"),
                        "{\"p\": [\"Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
                        "e\"]}");
        task_outcome_free(&o);
    }
    stop();
}

TEST(test_broken_html_parses_and_libxml2_writes_nothing_to_stderr) {
    start();
    /* stderr into a file for the call: libxml2 must not have written anything. */
    char path[] = "/tmp/workerd-scrape-stderr-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    task_outcome o = scrape("/broken", "{\"xpath\": {\"h1\": \"//h1\", \"bad\": \"//p[\"}}");
    task_outcome_free(&o);
    o = scrape("/bad-utf8", NULL); /* declared UTF-8, written in Latin-1 */
    ASSERT_EQ(o.rc, 0);
    ASSERT(json_is_string(json_object_get(o.result, "title")));
    task_outcome_free(&o);
    /* Bytes its declared charset cannot convert: libxml2 reports those on the thread's
     * error handlers, which write to stderr unless silenced. */
    o = scrape("/bad-sjis", NULL);
    ASSERT_EQ(o.rc, 0);
    task_outcome_free(&o);
    o = scrape("/broken", "{\"xpath\": {\"h1\": \"//h1\"}}");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t written = lseek(fd, 0, SEEK_END);
    close(fd);
    unlink(path);
    ASSERT_EQ(written, 0);
    ASSERT_EQ(o.rc, 0);
    ASSERT_STREQ(str(o.result, "title"), "Broken page"); /* libxml2 reads <b> as an element */
    ASSERT_LINKS(o.result, "[\"S/x\",\"S/y\",\"S/z\"]");
    ASSERT_EQ(json_array_size(json_object_get(json_object_get(o.result, "extract"), "h1")), 1);
    task_outcome_free(&o);
    stop();
}

/* ---- links ----------------------------------------------------------------------------- */

TEST(test_links_are_absolute_deduplicated_fragmentless_http_only) {
    start();
    task_outcome o = scrape("/links", NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_LINKS(o.result, "[\"S/a\",\"S/b\",\"S/c?q=1\",\"http://other.example:8080/d\","
                           "\"https://secure.example/e\",\"S/links\",\"S/spaced\",\"S/area\"]");
    ASSERT(json_is_null(json_object_get(o.result, "title")));
    ASSERT(json_is_null(json_object_get(o.result, "canonical")));
    task_outcome_free(&o);
    stop();
}

TEST(test_base_href_resolves_relative_links) {
    start();
    task_outcome o = scrape("/base/dir/page", NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_LINKS(o.result, "[\"S/other/root/x\",\"S/other/y\",\"S/z\",\"http://cdn.example/w\"]");
    task_outcome_free(&o);
    stop();
}

TEST(test_redirect_resolves_against_the_final_url) {
    start();
    task_outcome o = scrape("/redirect", NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_STREQ(str(o.result, "url"), scrape_site_url(&site, "/base/dir/page"));
    ASSERT_LINKS(o.result, "[\"S/other/root/x\",\"S/other/y\",\"S/z\",\"http://cdn.example/w\"]");
    task_outcome_free(&o);
    /* http.get's options apply: without redirects, the 302 itself (no body: no links). */
    o = scrape("/redirect", "{\"follow_redirects\": false}");
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(json_integer_value(json_object_get(o.result, "status")), 302);
    ASSERT_LINKS(o.result, "[]");
    task_outcome_free(&o);
    stop();
}

TEST(test_same_host_and_link_pattern_filter_links) {
    start();
    task_outcome o = scrape("/links", "{\"same_host\": true}");
    ASSERT_EQ(o.rc, 0);
    ASSERT_LINKS(o.result, "[\"S/a\",\"S/b\",\"S/c?q=1\",\"S/links\",\"S/spaced\",\"S/area\"]");
    task_outcome_free(&o);
    o = scrape("/links", "{\"link_pattern\": \"^https?://[^/]*example[^/]*/[de]$\"}");
    ASSERT_EQ(o.rc, 0);
    ASSERT_LINKS(o.result, "[\"http://other.example:8080/d\",\"https://secure.example/e\"]");
    task_outcome_free(&o);
    o = scrape("/links", "{\"same_host\": true, \"link_pattern\": \"/(a|area)$\"}");
    ASSERT_EQ(o.rc, 0);
    ASSERT_LINKS(o.result, "[\"S/a\",\"S/area\"]");
    task_outcome_free(&o);
    stop();
}

TEST(test_links_are_capped_and_the_result_says_so) {
    start();
    task_outcome o = scrape("/big-links", NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(json_array_size(json_object_get(o.result, "links")), 10000);
    ASSERT_JSON(json_object_get(o.result, "truncated"), "[\"links\"]");
    task_outcome_free(&o);
    stop();
}

/* ---- what is not HTML, and bad arguments ------------------------------------------------ */

TEST(test_json_is_not_html_naming_its_type) {
    start();
    task_outcome o = scrape("/json", NULL);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "NotHTML",
                      "http.scrape: the response is application/json, not HTML (text/html or "
                      "application/xhtml+xml)");
    task_outcome_free(&o);
    stop();
}

TEST(test_no_content_type_and_empty_body_still_parse) {
    start();
    task_outcome o = scrape("/text-no-type", NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_STREQ(str(o.result, "title"), "No type");
    task_outcome_free(&o);
    o = scrape("/empty", "{\"xpath\": {\"t\": \"//title\"}}");
    ASSERT_EQ(o.rc, 0);
    ASSERT(json_is_null(json_object_get(o.result, "title")));
    ASSERT_JSON(json_object_get(o.result, "extract"), "{\"t\": []}");
    task_outcome_free(&o);
    stop();
}

TEST(test_http_get_failures_and_limits_apply) {
    start();
    task_outcome o = scrape("/utf8", "{\"max_size\": 10}");
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "HTTPError");
    ASSERT(strstr(o.err.message, "max_size") != NULL);
    task_outcome_free(&o);
    o = scrape("/nowhere", "{\"raise_for_status\": true}");
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "HTTPError", "HTTP 404");
    task_outcome_free(&o);
    o = scrape("/nowhere", "{\"retry_on\": [404]}");
    ASSERT_EQ(o.rc, TASK_ERETRY);
    task_outcome_free(&o);
    stop();
}

TEST(test_bad_kwargs_are_failures_naming_the_field) {
    start();
    struct {
        const char *kwargs, *type, *message;
    } cases[] = {
        {"{\"xpath\": {\"t\": \"//p[\"}}", "ValueError",
         "http.scrape: kwarg xpath[\"t\"]: '//p[' is not a valid XPath expression: invalid "
         "expression at offset 4"},
        {"{\"xpath\": {\"t\": 3}}", "TypeError",
         "http.scrape: kwarg xpath[\"t\"] must be a string (an XPath expression), got integer"},
        {"{\"link_pattern\": \"(unclosed\"}", "ValueError",
         "http.scrape: kwarg link_pattern: '(unclosed' is not a POSIX extended regular "
         "expression: Unmatched ( or \\("},
        {"{\"queue\": \"a b\"}", "ValueError",
         "http.scrape: kwarg queue: queue name contains whitespace or a control character"},
        {"{\"crawl\": \"\"}", "ValueError", NULL},
        {"{\"same_host\": 1}", "TypeError", NULL},
        {"{\"follow\": -1}", "ValueError", NULL},
        {"{\"max_pages\": 0}", "ValueError", NULL},
        {"{\"xpath\": []}", "TypeError", NULL},
        {"{\"timeout\": \"x\"}", "TypeError", NULL},
        {"{\"bogus\": 1}", "TypeError", NULL},
    };
    const char *field[] = {"xpath",  "xpath",     "link_pattern", "queue",   "crawl", "same_host",
                           "follow", "max_pages", "xpath",        "timeout", "bogus"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        task_outcome o = scrape("/utf8", cases[i].kwargs);
        ASSERT_EQ(o.rc, TASK_EINVAL);
        ASSERT_STREQ(o.err.type, cases[i].type);
        if (cases[i].message != NULL)
            ASSERT_STREQ(o.err.message, cases[i].message);
        if (strstr(o.err.message, field[i]) == NULL)
            test__fail(__FILE__, __LINE__, "%s: the message does not name %s: %s", cases[i].kwargs,
                       field[i], o.err.message);
        task_outcome_free(&o);
    }
    /* None of them fetched anything: the arguments are checked first. */
    json_t *hits = scrape_site_hits(&site);
    ASSERT(json_object_get(hits, "/utf8") == NULL);
    json_decref(hits);
    stop();
}

TEST(test_follow_outside_a_worker_is_a_failure_not_a_crash) {
    start();
    task_outcome o = scrape("/links", "{\"follow\": 1}");
    ASSERT_EQ(o.rc, TASK_ERETRY);
    ASSERT_STREQ(o.err.type, "RuntimeError");
    task_outcome_free(&o);
    stop();
}
