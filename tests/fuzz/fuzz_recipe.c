/* tests/fuzz/fuzz_recipe.c: libFuzzer entry for the recipe INI loader (aqs_recipe_load in
 * engine/stages/recipe.c): the input is a workspace recipe "fz.ini" (it may extend the
 * built-ins); it loads or fails with an aqs_err naming the file. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/stages/recipe.h"
#include "fuzz_memfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char dir[64];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/aqs-fuzz-recipe-XXXXXX");
    if (!mkdtemp(dir)) abort();
    char link[128];
    snprintf(link, sizeof link, "%s/fz.ini", dir);
    if (symlink(fuzz_memfile(data, 0), link) != 0) abort();
  }
  fuzz_memfile(data, size);
  aqs_recipe_source src = {.workspace_dir = dir};
  aqs_recipe r;
  aqs_err err = {0};
  aqs_recipe_load(&src, "fz", &r, &err);
  return 0;
}
