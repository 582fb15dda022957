/* hmap: insert, find with colliding chains, remove, growth. */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "sipreg/hmap.h"

struct item {
	struct hmap_node node;
	int key;
};

static struct item *find(struct hmap *m, int key)
{
	uint64_t h = hmap_hash(&key, sizeof(key));

	for (struct hmap_node *n = hmap_first(m, h); n; n = hmap_next(n, h)) {
		struct item *it = hmap_entry(n, struct item, node);

		if (it->key == key)
			return it;
	}
	return NULL;
}

static void test_hmap_insert_find_remove_across_growth(void)
{
	struct hmap m;
	enum { N = 100000 };
	struct item *items = calloc(N, sizeof(*items));

	CHECK(items != NULL);
	CHECK_INT(hmap_init(&m, 4), 0);
	for (int i = 0; i < N; i++) {
		items[i].key = i;
		hmap_insert(&m, &items[i].node, hmap_hash(&i, sizeof(i)));
	}
	CHECK_INT(m.count, N);
	CHECK(m.mask + 1 >= N);
	for (int i = 0; i < N; i += 997)
		CHECK(find(&m, i) == &items[i]);
	CHECK(find(&m, N + 5) == NULL);
	for (int i = 0; i < N; i += 2)
		hmap_remove(&m, &items[i].node);
	CHECK_INT(m.count, N / 2);
	CHECK(find(&m, 10) == NULL);
	CHECK(find(&m, 11) == &items[11]);
	hmap_destroy(&m);
	free(items);
}

static void test_hmap_same_hash_chain(void)
{
	struct hmap m;
	struct item a = { .key = 1 }, b = { .key = 2 };
	struct hmap_node *n;

	CHECK_INT(hmap_init(&m, 16), 0);
	hmap_insert(&m, &a.node, 42);
	hmap_insert(&m, &b.node, 42);
	n = hmap_first(&m, 42);
	CHECK(n != NULL);
	CHECK(hmap_next(n, 42) != NULL);
	hmap_remove(&m, &a.node);
	CHECK(hmap_first(&m, 42) == &b.node);
	CHECK(hmap_next(&b.node, 42) == NULL);
	hmap_destroy(&m);
}

int main(void)
{
	RUN(test_hmap_insert_find_remove_across_growth);
	RUN(test_hmap_same_hash_chain);
	CHECK_DONE();
}
