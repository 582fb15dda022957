/* Arenas for libosip2's parse: bump allocation into fixed slots of one reserved region,
 * released whole.
 *
 * DESIGN: libosip2 lets a program replace its malloc, realloc and free (one set for the
 * process). Parsing a REGISTER makes some sixty allocations and freeing it as many frees,
 * about a third of what the daemon spends per request. The hooks bump-allocate into the
 * arena the calling thread entered; with no arena entered, or when the arena is full,
 * they are plain malloc and realloc. All arenas are slots of one mmap'd region (touched,
 * hence resident, only as used), so free() tells an arena pointer from a heap pointer by
 * its address alone: a heap pointer is freed, an arena pointer is left for the release
 * (except the newest block of the entered arena, which is taken back at once: libosip2
 * frees many short-lived temporaries). Released slots are reused last-in first-out, so
 * the few in use stay in the cache. Each block carries a 16-byte header with its size
 * (for realloc) and keeps malloc's 16-byte alignment. */
#include "sip/osip_arena.h"

#include <osipparser2/osip_port.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* A REGISTER with digest credentials takes about 4 KiB of libosip2's objects; a big
 * message spills over to malloc, which stays correct, only slower. */
#define ARENA_SLOT_SIZE (16u * 1024u)
/* Messages alive at once (requests waiting for the backend); beyond, malloc. */
#define ARENA_SLOTS 8192u
#define ARENA_ALIGN 16u

struct osip_arena {
	uint32_t slot;
	uint32_t used; /* bytes of the slot in use, this header included */
	bool whole;
};

struct arena_block {
	size_t size;  /* bytes asked for */
	size_t start; /* offset of this header in the slot */
};

static struct {
	pthread_mutex_t lock;
	char *base;	/* NULL: no region, every hook is plain malloc */
	uint32_t fresh; /* slots never handed out start here */
	uint32_t n_free;
	uint32_t free_slots[ARENA_SLOTS];
} region = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local struct osip_arena *arena_current;

static size_t align_up(size_t n)
{
	return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

static bool arena_owns(const void *p)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)region.base;

	return region.base && a >= b && a - b < (uintptr_t)ARENA_SLOTS * ARENA_SLOT_SIZE;
}

static struct arena_block *block_of(void *p)
{
	return (struct arena_block *)((char *)p - sizeof(struct arena_block));
}

static void *arena_take(struct osip_arena *a, size_t size)
{
	size_t start = a->used, need;
	struct arena_block *b;

	if (size > ARENA_SLOT_SIZE)
		return NULL;
	need = sizeof(*b) + align_up(size ? size : 1);
	if (need > ARENA_SLOT_SIZE - start)
		return NULL;
	b = (struct arena_block *)((char *)a + start);
	b->size = size;
	b->start = start;
	a->used = (uint32_t)(start + need);
	return b + 1;
}

static void *arena_malloc(size_t size)
{
	struct osip_arena *a = arena_current;
	void *p;

	if (!a)
		return malloc(size);
	p = arena_take(a, size);
	if (p)
		return p;
	a->whole = false;
	return malloc(size);
}

/* The newest block of the entered arena is taken back; any other arena block waits for
 * its arena's release. */
static void arena_free(void *p)
{
	struct osip_arena *a = arena_current;
	struct arena_block *b;

	if (!arena_owns(p)) {
		free(p);
		return;
	}
	b = block_of(p);
	if (a && (char *)b - (char *)a == (ptrdiff_t)b->start &&
	    b->start + sizeof(*b) + align_up(b->size ? b->size : 1) == a->used)
		a->used = (uint32_t)b->start;
}

static void *arena_realloc(void *p, size_t size)
{
	struct arena_block *b;
	void *np;

	if (!p)
		return arena_malloc(size);
	if (!arena_owns(p))
		return realloc(p, size);
	b = block_of(p);
	np = arena_malloc(size);
	if (!np)
		return NULL;
	memcpy(np, p, b->size < size ? b->size : size);
	arena_free(p);
	return np;
}

void osip_arena_setup(void)
{
	void *base = mmap(NULL, (size_t)ARENA_SLOTS * ARENA_SLOT_SIZE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	pthread_mutex_lock(&region.lock);
	if (base != MAP_FAILED && !region.base)
		region.base = base;
	else if (base != MAP_FAILED)
		munmap(base, (size_t)ARENA_SLOTS * ARENA_SLOT_SIZE);
	pthread_mutex_unlock(&region.lock);
	/* Installed even without a region: then they are malloc, realloc and free. */
	osip_set_allocators(arena_malloc, arena_realloc, arena_free);
}

struct osip_arena *osip_arena_get(void)
{
	struct osip_arena *a;
	uint32_t slot;

	pthread_mutex_lock(&region.lock);
	if (!region.base || (region.n_free == 0 && region.fresh == ARENA_SLOTS)) {
		pthread_mutex_unlock(&region.lock);
		return NULL;
	}
	slot = region.n_free ? region.free_slots[--region.n_free] : region.fresh++;
	pthread_mutex_unlock(&region.lock);
	a = (struct osip_arena *)(region.base + (size_t)slot * ARENA_SLOT_SIZE);
	a->slot = slot;
	a->used = (uint32_t)align_up(sizeof(*a));
	a->whole = true;
	return a;
}

void *osip_arena_alloc(struct osip_arena *a, size_t size)
{
	return a ? arena_take(a, size) : NULL;
}

bool osip_arena_holds(const struct osip_arena *a, const void *p)
{
	uintptr_t x = (uintptr_t)p, b = (uintptr_t)a;

	return a && x >= b && x - b < ARENA_SLOT_SIZE;
}

void osip_arena_enter(struct osip_arena *a)
{
	arena_current = a;
}

void osip_arena_leave(void)
{
	arena_current = NULL;
}

bool osip_arena_whole(const struct osip_arena *a)
{
	return a && a->whole;
}

size_t osip_arena_used(const struct osip_arena *a)
{
	return a ? a->used : 0;
}

void osip_arena_put(struct osip_arena **ap)
{
	struct osip_arena *a = *ap;

	if (!a)
		return;
	if (arena_current == a)
		arena_current = NULL;
	pthread_mutex_lock(&region.lock);
	region.free_slots[region.n_free++] = a->slot;
	pthread_mutex_unlock(&region.lock);
	*ap = NULL;
}
