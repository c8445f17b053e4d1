/*
 * scrape_site.h - the generated web site of the http.scrape tests (scrape_site.py, run
 * with Debian's /usr/bin/python3) on a free loopback port, and its hit counts.
 *
 *     scrape_site s;
 *     scrape_site_start(&s, 200);            // /site/0 .. /site/199, and the fixed pages
 *     ... http://127.0.0.1:<s.port>/site/0 ...
 *     json_t *hits = scrape_site_hits(&s);   // {"/site/0": 1, ...}
 *     scrape_site_stop(&s);
 *
 * The server is a child of the test with PR_SET_PDEATHSIG(SIGKILL); stop kills it by its
 * pid and reaps it. ASSERTs on any failure. Single-threaded test programs only.
 */
#ifndef WORKERD_TESTS_SCRAPE_SITE_H
#define WORKERD_TESTS_SCRAPE_SITE_H

#include <jansson.h>
#include <sys/types.h>

typedef struct scrape_site {
    pid_t pid;
    int port;
} scrape_site;

void scrape_site_start(scrape_site *s, int pages);
void scrape_site_stop(scrape_site *s);

/* "http://127.0.0.1:<port><path>" in a static buffer of one of 8 slots, used in turn. */
const char *scrape_site_url(const scrape_site *s, const char *path);

/* The hits per path so far (a new reference). */
json_t *scrape_site_hits(const scrape_site *s);

/* {path: {"bytes": body bytes the site wrote, "ended": its response is over}} for the
 * large responses (/huge.bin) so far (a new reference). */
json_t *scrape_site_served(const scrape_site *s);

#endif
