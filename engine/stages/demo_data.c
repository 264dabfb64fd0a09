/* engine/stages/demo_data.c: synthetic captions for the demo (see demo_data.h). */
#include "engine/stages/demo_data.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

static const char *const subjects[] = {"man", "woman", "dog", "cat", "child", "group of people", "bus",
                                       "train", "bird", "horse", "skateboarder", "chef", "giraffe",
                                       "couple", "surfer", "teddy bear"};
static const char *const adjectives[] = {"young", "small", "large", "brown", "white", "red", "happy",
                                         "old", "black", "tall", "striped", "little"};
static const char *const actions[] = {"sitting on", "standing next to", "walking along", "riding",
                                      "looking at", "holding", "lying on", "jumping over", "parked near",
                                      "playing with", "eating"};
static const char *const objects[] = {"a wooden bench", "the beach", "a busy street", "a green field",
                                      "a kitchen counter", "a plate of food", "the snow", "a city sidewalk",
                                      "a frisbee", "the ocean waves", "a red umbrella", "a table"};
static const char *const endings[] = {".", " in the afternoon.", " on a sunny day.", " at night.",
                                      " near some trees.", "."};

#define PICK(arr, r) arr[(r) % (sizeof arr / sizeof arr[0])]

static uint64_t next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

aqs_status aqs_demo_write_captions(const char *path, int n, uint64_t seed, aqs_err *e) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return aqs_errno(e, AQS_ERR_IO, errno, "%s", tmp);
  uint64_t s = seed;
  for (int i = 0; i < n; i++) {
    const char *article = (next(&s) & 1) ? "A" : "The";
    fprintf(f, "%s %s %s %s %s%s\n", article, PICK(adjectives, next(&s)), PICK(subjects, next(&s)),
            PICK(actions, next(&s)), PICK(objects, next(&s)), PICK(endings, next(&s)));
  }
  if (fclose(f) != 0) {
    unlink(tmp);
    return aqs_errno(e, AQS_ERR_IO, errno, "%s", tmp);
  }
  if (rename(tmp, path) != 0) {
    unlink(tmp);
    return aqs_errno(e, AQS_ERR_IO, errno, "%s", path);
  }
  return AQS_OK;
}
