/* A bounded table (fifo_map.c): fixed-size records in a ring, found through a hash map by
 * a 64-bit key. Memory is fixed at init; when full, the oldest record goes, so a flood of
 * new keys costs old records, never memory. Digest replay records and ban counters use it. */
#ifndef SIPREG_UTIL_FIFO_MAP_H
#define SIPREG_UTIL_FIFO_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sipreg/hmap.h"

/* The head of every record: embed it first in the record struct. */
struct fifo_entry {
	struct hmap_node node;
	bool live;
};

struct fifo_map {
	struct hmap map;
	unsigned char *slots;
	size_t slot_size, cap;
	size_t head, count; /* next slot to fill; live slots end at head */
};

/* cap records of slot_size bytes (>= sizeof(struct fifo_entry)). Returns 0 or ENOMEM;
 * fifo_map_destroy() releases a map whether or not init succeeded. */
int fifo_map_init(struct fifo_map *f, size_t cap, size_t slot_size, size_t buckets);
void fifo_map_destroy(struct fifo_map *f);

/* Records of key, newest first: fifo_map_first, then fifo_map_next until NULL. */
struct fifo_entry *fifo_map_first(const struct fifo_map *f, uint64_t key);
struct fifo_entry *fifo_map_next(const struct fifo_entry *e, uint64_t key);

/* Is e no longer needed? The caller's rule (expired, window over). */
typedef bool(fifo_dead_h)(const struct fifo_entry *e, void *arg);
/* e leaves the map (reclaimed or pushed out); may be NULL. */
typedef void(fifo_evict_h)(const struct fifo_entry *e, void *arg);

/* A new record for key, zeroed but for its head. Up to a few dead records at the old end
 * are reclaimed first; when the ring is still full, the oldest record goes, dead or not.
 * evict is told of each live record that leaves. Never fails. */
struct fifo_entry *fifo_map_add(struct fifo_map *f, uint64_t key, fifo_dead_h *dead,
				fifo_evict_h *evict, void *arg);

#endif
