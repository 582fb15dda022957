/* An intrusive chained hash table with power-of-two buckets: the one table behind the
 * transaction layer, the memory backend, the TCP connection list and the ban counters.
 * Entries embed a struct hmap_node; the table never allocates per entry. */
#ifndef SIPREG_HMAP_H
#define SIPREG_HMAP_H

#include <stddef.h>
#include <stdint.h>

struct hmap_node {
	struct hmap_node *next;
	uint64_t hash;
};

struct hmap {
	struct hmap_node **buckets;
	size_t mask;  /* buckets - 1 */
	size_t count;
};

/* Seeded 64-bit hash of bytes (XXH3); the seed is chosen once per process so bucket
 * placement cannot be predicted from outside. */
uint64_t hmap_hash(const void *p, size_t len);
/* Continue a hash over another piece: hmap_hash_more(hmap_hash(a), b, blen). */
uint64_t hmap_hash_more(uint64_t h, const void *p, size_t len);

/* Returns 0 or ENOMEM. initial is rounded up to a power of two (minimum 16). */
int hmap_init(struct hmap *m, size_t initial);
/* Frees the bucket array only; entries belong to the caller. */
void hmap_destroy(struct hmap *m);
/* Insert n with hash; grows the table when the load passes 1 (growth failure is not an
 * error: the table just gets longer chains). */
void hmap_insert(struct hmap *m, struct hmap_node *n, uint64_t hash);
/* Remove n, which must be in the table. */
void hmap_remove(struct hmap *m, struct hmap_node *n);
/* First node of the chain for hash; follow with hmap_next(). Caller compares keys. */
struct hmap_node *hmap_first(const struct hmap *m, uint64_t hash);
struct hmap_node *hmap_next(const struct hmap_node *n, uint64_t hash);

#define hmap_entry(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Iterate every node: for (size_t i = 0; ...) helpers for listing and teardown. */
#define HMAP_FOREACH_SAFE(m, node, tmp, i)                                                 \
	for ((i) = 0; (i) <= (m)->mask; (i)++)                                             \
		for ((node) = (m)->buckets[(i)]; (node) && (((tmp) = (node)->next), 1);    \
		     (node) = (tmp))

#endif
