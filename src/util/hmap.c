/* Intrusive chained hash table; see hmap.h. */
#include "sipreg/hmap.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>
#include <xxhash.h>

static uint64_t hmap_seed;
static int hmap_seeded;

static uint64_t seed_get(void)
{
	if (!hmap_seeded) {
		if (getrandom(&hmap_seed, sizeof(hmap_seed), GRND_NONBLOCK) != sizeof(hmap_seed))
			hmap_seed = (uint64_t)(uintptr_t)&hmap_seed ^ 0x9e3779b97f4a7c15ULL;
		hmap_seeded = 1;
	}
	return hmap_seed;
}

uint64_t hmap_hash(const void *p, size_t len)
{
	return XXH3_64bits_withSeed(p, len, seed_get());
}

uint64_t hmap_hash_more(uint64_t h, const void *p, size_t len)
{
	return XXH3_64bits_withSeed(p, len, h);
}

int hmap_init(struct hmap *m, size_t initial)
{
	size_t n = 16;

	while (n < initial)
		n <<= 1;
	m->buckets = calloc(n, sizeof(*m->buckets));
	if (!m->buckets)
		return ENOMEM;
	m->mask = n - 1;
	m->count = 0;
	return 0;
}

void hmap_destroy(struct hmap *m)
{
	free(m->buckets);
	m->buckets = NULL;
	m->mask = 0;
	m->count = 0;
}

static void hmap_grow(struct hmap *m)
{
	size_t n = (m->mask + 1) * 2;
	struct hmap_node **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return;
	for (size_t i = 0; i <= m->mask; i++) {
		struct hmap_node *e = m->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			e->next = nb[e->hash & (n - 1)];
			nb[e->hash & (n - 1)] = e;
		}
	}
	free(m->buckets);
	m->buckets = nb;
	m->mask = n - 1;
}

void hmap_insert(struct hmap *m, struct hmap_node *n, uint64_t hash)
{
	if (m->count >= m->mask + 1)
		hmap_grow(m);
	n->hash = hash;
	n->next = m->buckets[hash & m->mask];
	m->buckets[hash & m->mask] = n;
	m->count++;
}

void hmap_remove(struct hmap *m, struct hmap_node *n)
{
	struct hmap_node **pp = &m->buckets[n->hash & m->mask];

	for (; *pp; pp = &(*pp)->next) {
		if (*pp == n) {
			*pp = n->next;
			n->next = NULL;
			m->count--;
			return;
		}
	}
}

struct hmap_node *hmap_first(const struct hmap *m, uint64_t hash)
{
	struct hmap_node *n = m->buckets[hash & m->mask];

	while (n && n->hash != hash)
		n = n->next;
	return n;
}

struct hmap_node *hmap_next(const struct hmap_node *n, uint64_t hash)
{
	for (n = n->next; n && n->hash != hash; n = n->next)
		;
	return (struct hmap_node *)n;
}
