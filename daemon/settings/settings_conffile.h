/*
 * settings_conffile.h - KEY=VALUE files read the way systemd reads an EnvironmentFile=, so that
 * one /etc/workerd/workerd.conf serves both `EnvironmentFile=` in a unit and `--config`.
 *
 * The syntax (a subset of systemd's, close to a shell assignment list):
 *   - blank lines are skipped; a line whose first non-blank character is '#' or ';' is a
 *     comment (only at the start of a line: "A=1 # x" gives A the value "1 # x");
 *   - KEY=VALUE, with blanks allowed around KEY and before VALUE; KEY is letters, digits
 *     and '_', not starting with a digit;
 *   - an unquoted VALUE loses its trailing blanks; a backslash takes the next character
 *     literally, and a backslash at the end of a line continues the value on the next;
 *   - 'single quotes' keep everything literally; "double quotes" keep everything but
 *     treat \" \\ \` \$ as escapes; either may span lines; quoted and unquoted parts join
 *     ("a"'b'c is abc).
 *
 * Pure parsing of a caller's buffer: no I/O, thread-safe, any stack, never yields.
 */
#ifndef WORKERD_SETTINGS_CONFFILE_H
#define WORKERD_SETTINGS_CONFFILE_H

#include <stddef.h>

/* Called once per assignment, in file order, with the line the assignment starts on. Both
 * strings live only until the callback returns. Returns 0 to go on, or -1 after writing a
 * one-line message to errbuf, which stops the parse. */
typedef int (*settings_conffile_fn)(void *ud, const char *key, const char *value, int line,
                                    char *errbuf, size_t errlen);

/* Parse text[0..len) (NUL bytes are errors), calling fn for each assignment. name is the
 * file name used in messages. Returns 0, or -1 with a one-line message in errbuf, either
 * the callback's own or one of the parser's, which leave the program's name to the caller:
 *   "expected KEY=VALUE, got 'text' (from NAME line N)"
 *   "bad key 'text' (from NAME line N)"
 *   "unterminated quote in the value of KEY (from NAME line N)"
 *   "NUL byte in the file (from NAME line N)"
 *   "out of memory reading NAME" */
int settings_conffile_parse(const char *text, size_t len, const char *name, settings_conffile_fn fn,
                            void *ud, char *errbuf, size_t errlen);

#endif
