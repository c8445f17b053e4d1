/*
 * test_conffile.c - the config file syntax, as systemd's EnvironmentFile= reads it: what
 * each kind of line means, and the message for each kind of broken line.
 */
#include "testlib.h"

#include "settings_conffile.h"

/* Collects "KEY=VALUE@LINE;" for every assignment into one string. */
static char seen[2048];
static char err[512];

static int collect(void *ud, const char *key, const char *value, int line, char *errbuf,
                   size_t errlen) {
    (void)ud, (void)errbuf, (void)errlen;
    size_t n = strlen(seen);
    snprintf(seen + n, sizeof seen - n, "%s=%s@%d;", key, value, line);
    return 0;
}

static int parse(const char *text) {
    seen[0] = '\0';
    err[0] = '\0';
    return settings_conffile_parse(text, strlen(text), "test.conf", collect, NULL, err, sizeof err);
}

TEST(comments_and_blank_lines_are_skipped) {
    ASSERT_EQ(parse("# a comment\n"
                    "   ; another\n"
                    "\n"
                    "   \t\n"
                    "A=1\n"),
              0);
    ASSERT_STREQ(seen, "A=1@5;");
}

TEST(blanks_around_key_and_value_are_dropped) {
    ASSERT_EQ(parse("  A  =   one two  \t\nB=x\r\n"), 0);
    ASSERT_STREQ(seen, "A=one two@1;B=x@2;");
}

TEST(hash_after_a_value_is_part_of_it) {
    ASSERT_EQ(parse("A=1 # not a comment\n"), 0);
    ASSERT_STREQ(seen, "A=1 # not a comment@1;");
}

TEST(quotes_keep_blanks_and_join_with_neighbours) {
    ASSERT_EQ(parse("A='  x  '\nB=\"a\"'b'c\nC=\"say \\\"hi\\\" \\$HOME \\n\"\nD=''\n"), 0);
    ASSERT_STREQ(seen, "A=  x  @1;B=abc@2;C=say \"hi\" $HOME \\n@3;D=@4;");
}

TEST(quoted_value_may_span_lines) {
    ASSERT_EQ(parse("A=\"line one\nline two\"\nB=2\n"), 0);
    ASSERT_STREQ(seen, "A=line one\nline two@1;B=2@3;");
}

TEST(backslash_continues_a_line) {
    ASSERT_EQ(parse("A=one\\\ntwo\nB=a\\ b\n"), 0);
    ASSERT_STREQ(seen, "A=onetwo@1;B=a b@3;");
}

TEST(last_line_needs_no_newline) {
    ASSERT_EQ(parse("A=1\nB=2"), 0);
    ASSERT_STREQ(seen, "A=1@1;B=2@2;");
}

TEST(line_without_equals_is_rejected) {
    ASSERT_EQ(parse("A=1\n\njust some words\n"), -1);
    ASSERT_STREQ(err, "expected KEY=VALUE, got 'just some words' (from test.conf line 3)");
}

TEST(bad_key_is_rejected) {
    ASSERT_EQ(parse("export A=1\n"), -1);
    ASSERT_STREQ(err, "bad key 'export A' (from test.conf line 1)");
    ASSERT_EQ(parse("1A=1\n"), -1);
    ASSERT_STREQ(err, "bad key '1A' (from test.conf line 1)");
}

TEST(unterminated_quote_is_rejected) {
    ASSERT_EQ(parse("A=1\nB=\"open\nstill open\n"), -1);
    ASSERT_STREQ(err, "unterminated quote in the value of B (from test.conf line 2)");
}

TEST(nul_byte_is_rejected) {
    const char text[] = "A=1\nB=x\0y\n";
    seen[0] = '\0';
    ASSERT_EQ(
        settings_conffile_parse(text, sizeof text - 1, "test.conf", collect, NULL, err, sizeof err),
        -1);
    ASSERT_STREQ(err, "NUL byte in the file (from test.conf line 2)");
}

static int refuse_b(void *ud, const char *key, const char *value, int line, char *errbuf,
                    size_t errlen) {
    (void)ud, (void)value;
    if (strcmp(key, "B") == 0) {
        snprintf(errbuf, errlen, "no B please (line %d)", line);
        return -1;
    }
    return 0;
}

TEST(callback_error_stops_the_parse) {
    const char *text = "A=1\nB=2\nC=3\n";
    ASSERT_EQ(settings_conffile_parse(text, strlen(text), "t", refuse_b, NULL, err, sizeof err),
              -1);
    ASSERT_STREQ(err, "no B please (line 2)");
}
