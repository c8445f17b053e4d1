/*
 * test_keys.c - Redis key names from the prefix, the checks on the names in them, key
 * names read back (the queue of a queue key, the SCAN pattern of the queues), and the
 * values with a structure (a worker's queue list, an in-flight entry).
 */
#include "broker_keys.h"

#include <errno.h>
#include <stdlib.h>

#include "testlib.h"

TEST(keys_use_the_default_prefix) {
    broker_keys k;
    char buf[BROKER_KEY_MAX];
    ASSERT_EQ(broker_keys_init(&k, NULL), 0);
    ASSERT_EQ(broker_key_queue(&k, "default", buf), 21);
    ASSERT_STREQ(buf, "workerd:queue:default");
    broker_key_scheduled(&k, buf);
    ASSERT_STREQ(buf, "workerd:scheduled");
    broker_key_worker(&k, "h:1", buf);
    ASSERT_STREQ(buf, "workerd:worker:h:1");
    broker_key_workers(&k, buf);
    ASSERT_STREQ(buf, "workerd:workers");
    broker_key_inflight(&k, "h:1", buf);
    ASSERT_STREQ(buf, "workerd:inflight:h:1");
    broker_key_landing(&k, "h:1", "high", buf);
    ASSERT_STREQ(buf, "workerd:landing:h:1:high");
    broker_key_result(&k, "job 1", buf);
    ASSERT_STREQ(buf, "workerd:result:job 1");
    ASSERT_EQ(broker_key_revoked(&k, "job 1", buf), 21);
    ASSERT_STREQ(buf, "workerd:revoked:job 1");
    broker_key_dead(&k, buf);
    ASSERT_STREQ(buf, "workerd:dead");
    broker_key_events(&k, buf);
    ASSERT_STREQ(buf, "workerd:events");
    broker_key_seq(&k, buf);
    ASSERT_STREQ(buf, "workerd:seq");
}

TEST(custom_prefix_is_used_and_bad_ones_refused) {
    broker_keys k;
    char buf[BROKER_KEY_MAX];
    ASSERT_EQ(broker_keys_init(&k, "app1"), 0);
    broker_key_queue(&k, "q", buf);
    ASSERT_STREQ(buf, "app1:queue:q");
    ASSERT_EQ(broker_keys_init(&k, ""), -EINVAL);
    ASSERT_EQ(broker_keys_init(&k, "a b"), -EINVAL);
    ASSERT_EQ(broker_keys_init(&k, "a\nb"), -EINVAL);
    ASSERT_EQ(
        broker_keys_init(&k, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
        -EINVAL);
    broker_key_queue(&k, "q", buf); /* k unchanged by the failed inits */
    ASSERT_STREQ(buf, "app1:queue:q");
}

TEST(queue_names_are_validated) {
    ASSERT(broker_check_queue_name("default") == NULL);
    ASSERT(broker_check_queue_name("élevée.high-1") == NULL);
    ASSERT_STREQ(broker_check_queue_name(""), "queue name is empty");
    ASSERT_STREQ(broker_check_queue_name("a b"),
                 "queue name contains whitespace or a control character");
    ASSERT_STREQ(broker_check_queue_name("a\nb"),
                 "queue name contains whitespace or a control character");
    ASSERT_STREQ(broker_check_queue_name("a,b"), "queue name contains a comma");
    char longname[200];
    memset(longname, 'q', 129);
    longname[129] = '\0';
    ASSERT_STREQ(broker_check_queue_name(longname), "queue name is longer than 128 bytes");
    broker_keys k;
    char buf[BROKER_KEY_MAX];
    broker_keys_init(&k, NULL);
    ASSERT_EQ(broker_key_queue(&k, "a b", buf), -EINVAL);
    ASSERT_STREQ(buf, "");
    ASSERT_EQ(broker_key_landing(&k, "w", "a,b", buf), -EINVAL);
}

TEST(worker_and_task_ids_are_validated) {
    ASSERT(broker_check_worker_id("host:123:ab") == NULL);
    ASSERT(broker_check_worker_id("bad id") != NULL);
    ASSERT(broker_check_worker_id("") != NULL);
    ASSERT(broker_check_task_id("any thing, really") == NULL);
    ASSERT(broker_check_task_id("") != NULL);
    broker_keys k;
    char buf[BROKER_KEY_MAX];
    broker_keys_init(&k, NULL);
    ASSERT_EQ(broker_key_inflight(&k, "a\tb", buf), -EINVAL);
    ASSERT_EQ(broker_key_result(&k, "", buf), -EINVAL);
}

TEST(longest_valid_parts_fit_the_buffer) {
    char p[BROKER_PREFIX_MAX + 1], w[BROKER_WORKER_ID_MAX + 1], q[BROKER_QUEUE_NAME_MAX + 1];
    memset(p, 'p', sizeof p - 1);
    p[sizeof p - 1] = '\0';
    memset(w, 'w', sizeof w - 1);
    w[sizeof w - 1] = '\0';
    memset(q, 'q', sizeof q - 1);
    q[sizeof q - 1] = '\0';
    broker_keys k;
    char buf[BROKER_KEY_MAX];
    ASSERT_EQ(broker_keys_init(&k, p), 0);
    ASSERT_EQ(broker_key_landing(&k, w, q, buf),
              BROKER_PREFIX_MAX + BROKER_WORKER_ID_MAX + BROKER_QUEUE_NAME_MAX + 10);
}

TEST(revoked_key_needs_a_valid_task_id) {
    broker_keys k;
    char buf[BROKER_KEY_MAX], id[BROKER_ID_MAX + 2];
    broker_keys_init(&k, "app");
    ASSERT_EQ(broker_key_revoked(&k, "", buf), -EINVAL);
    ASSERT_STREQ(buf, "");
    memset(id, 'i', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    ASSERT_EQ(broker_key_revoked(&k, id, buf), -EINVAL);
    id[BROKER_ID_MAX] = '\0';
    ASSERT_EQ(broker_key_revoked(&k, id, buf), (int)strlen("app:revoked:") + BROKER_ID_MAX);
}

TEST(queue_pattern_escapes_the_glob_characters_of_the_prefix) {
    broker_keys k;
    char buf[BROKER_KEY_MAX];
    broker_keys_init(&k, NULL);
    ASSERT_EQ(broker_key_queue_pattern(&k, buf), 15);
    ASSERT_STREQ(buf, "workerd:queue:*");
    broker_keys_init(&k, "a*b?[c]\\d");
    broker_key_queue_pattern(&k, buf);
    ASSERT_STREQ(buf, "a\\*b\\?\\[c\\]\\\\d:queue:*");
    /* The longest prefix, every byte a glob character, still fits. */
    char p[BROKER_PREFIX_MAX + 1];
    memset(p, '*', sizeof p - 1);
    p[sizeof p - 1] = '\0';
    ASSERT_EQ(broker_keys_init(&k, p), 0);
    ASSERT_EQ(broker_key_queue_pattern(&k, buf), 2 * BROKER_PREFIX_MAX + 8);
}

static const char *queue_of(const broker_keys *k, const char *key) {
    return broker_key_queue_name(k, key, strlen(key));
}

TEST(queue_name_is_read_back_from_its_key) {
    broker_keys k;
    char buf[BROKER_KEY_MAX], q[BROKER_QUEUE_NAME_MAX + 1];
    broker_keys_init(&k, NULL);
    ASSERT_STREQ(queue_of(&k, "workerd:queue:default"), "default");
    ASSERT_STREQ(queue_of(&k, "workerd:queue:élevée:1"), "élevée:1");
    memset(q, 'q', sizeof q - 1);
    q[sizeof q - 1] = '\0';
    int len = broker_key_queue(&k, q, buf);
    ASSERT_STREQ(broker_key_queue_name(&k, buf, (size_t)len), q);
}

TEST(keys_that_are_not_queues_have_no_queue_name) {
    broker_keys k;
    broker_keys_init(&k, "wt");
    ASSERT(queue_of(&k, "workerd:queue:default") == NULL); /* another prefix */
    ASSERT(queue_of(&k, "wtx:queue:default") == NULL);
    ASSERT(queue_of(&k, "wt:queued:default") == NULL);
    ASSERT(queue_of(&k, "wt:result:default") == NULL);
    ASSERT(queue_of(&k, "wt:queue:") == NULL);
    ASSERT(queue_of(&k, "wt:queue") == NULL);
    ASSERT(queue_of(&k, "wt") == NULL);
    ASSERT(queue_of(&k, "wt:queue:a b") == NULL); /* names broker_key_queue refuses */
    ASSERT(queue_of(&k, "wt:queue:a,b") == NULL);
    ASSERT(broker_key_queue_name(&k, "wt:queue:a\0b", 12) == NULL); /* a NUL inside */
}

TEST(queue_list_joins_and_splits) {
    const char *queues[] = {"high", "default", "élevée"};
    char *list = broker_queue_list_join(queues, 3);
    ASSERT_STREQ(list, "high,default,élevée");
    char *cursor = list;
    for (size_t i = 0; i < 3; i++)
        ASSERT_STREQ(broker_queue_list_next(&cursor), queues[i]);
    ASSERT(broker_queue_list_next(&cursor) == NULL);
    ASSERT(broker_queue_list_next(&cursor) == NULL);
    free(list);
    list = broker_queue_list_join(queues, 0);
    ASSERT_STREQ(list, "");
    cursor = list;
    ASSERT(broker_queue_list_next(&cursor) == NULL);
    free(list);
    char edited[] = ",a,,b,"; /* a hand-edited value: empty items are skipped */
    cursor = edited;
    ASSERT_STREQ(broker_queue_list_next(&cursor), "a");
    ASSERT_STREQ(broker_queue_list_next(&cursor), "b");
    ASSERT(broker_queue_list_next(&cursor) == NULL);
}

TEST(inflight_value_splits_at_the_first_newline) {
    const char value[] = "high\n{\"id\":\"a\"}\n";
    const char *queue, *raw;
    size_t qlen, rawlen;
    ASSERT(broker_inflight_split(value, sizeof value - 1, &queue, &qlen, &raw, &rawlen));
    ASSERT_EQ(qlen, 4);
    ASSERT(strncmp(queue, "high", 4) == 0);
    ASSERT_EQ(rawlen, 11);
    ASSERT(strncmp(raw, "{\"id\":\"a\"}\n", 11) == 0);
    const char bare[] = "{\"id\":\"a\"}";
    ASSERT(!broker_inflight_split(bare, sizeof bare - 1, &queue, &qlen, &raw, &rawlen));
    ASSERT_EQ(qlen, 0);
    ASSERT(raw == bare);
    ASSERT_EQ(rawlen, sizeof bare - 1);
}
