/*
 * test_keys.c - Redis key names from the prefix, and the checks on the names in them.
 */
#include "broker_keys.h"

#include <errno.h>

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
