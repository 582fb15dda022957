/* A bounded table of records: a FIFO ring for the memory bound and the eviction order, a
 * hash map for the lookups. */
#include "util/fifo_map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Dead records reclaimed per add: enough to keep up with expiry, bounded per call. */
#define FIFO_RECLAIM_MAX 8

static struct fifo_entry *slot(const struct fifo_map *f, size_t i)
{
	return (struct fifo_entry *)(f->slots + i * f->slot_size);
}

int fifo_map_init(struct fifo_map *f, size_t cap, size_t slot_size, size_t buckets)
{
	memset(f, 0, sizeof(*f));
	if (cap == 0 || slot_size < sizeof(struct fifo_entry))
		return EINVAL;
	f->slots = calloc(cap, slot_size);
	if (!f->slots)
		return ENOMEM;
	f->cap = cap;
	f->slot_size = slot_size;
	return hmap_init(&f->map, buckets);
}

void fifo_map_destroy(struct fifo_map *f)
{
	if (f->map.buckets)
		hmap_destroy(&f->map);
	free(f->slots);
	memset(f, 0, sizeof(*f));
}

struct fifo_entry *fifo_map_first(const struct fifo_map *f, uint64_t key)
{
	struct hmap_node *n = hmap_first(&f->map, key);

	return n ? hmap_entry(n, struct fifo_entry, node) : NULL;
}

struct fifo_entry *fifo_map_next(const struct fifo_entry *e, uint64_t key)
{
	struct hmap_node *n = hmap_next(&e->node, key);

	return n ? hmap_entry(n, struct fifo_entry, node) : NULL;
}

static void drop(struct fifo_map *f, struct fifo_entry *e, fifo_evict_h *evict, void *arg)
{
	if (e->live) {
		if (evict)
			evict(e, arg);
		hmap_remove(&f->map, &e->node);
	}
	e->live = false;
}

struct fifo_entry *fifo_map_add(struct fifo_map *f, uint64_t key, fifo_dead_h *dead,
				fifo_evict_h *evict, void *arg)
{
	struct fifo_entry *e;

	for (int i = 0; i < FIFO_RECLAIM_MAX && f->count; i++) {
		e = slot(f, (f->head + f->cap - f->count) % f->cap);
		if (e->live && !dead(e, arg) && f->count < f->cap)
			break;
		drop(f, e, evict, arg);
		f->count--;
	}
	e = slot(f, f->head);
	drop(f, e, evict, arg);
	memset(e, 0, f->slot_size);
	e->live = true;
	hmap_insert(&f->map, &e->node, key);
	f->head = (f->head + 1) % f->cap;
	if (f->count < f->cap)
		f->count++;
	return e;
}
