/* cli/cmd_preprocess_image.c: `aqs preprocess-image --config preprocessor_config.json IMAGE`:
 * plumbing over engine/image: decodes one PNG/JPEG, preprocesses it as Qwen2-VL's image
 * processor does, prints image_grid_thw and writes pixel_values as a safetensors file. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "engine/image/image.h"
#include "engine/image/qwen_vision.h"
#include "engine/model/safetensors.h"

static const char preprocess_usage[] =
    "usage: aqs preprocess-image [--config preprocessor_config.json] [-o OUT.safetensors] [--json]\n"
    "                            IMAGE\n"
    "\n"
    "Decodes IMAGE (PNG or JPEG), converts it to RGB as PIL's convert(\"RGB\") does, and\n"
    "preprocesses it exactly as transformers' slow Qwen2VLImageProcessor: smart_resize (factor\n"
    "patch_size*merge_size, min/max pixels), PIL bicubic resize, rescale, normalize, temporal\n"
    "repeat, patchify. Prints image_grid_thw (t h w), the resized size and the number of\n"
    "<|image_pad|> tokens, and writes OUT (default: IMAGE's name + .safetensors in the current\n"
    "directory) with tensors pixel_values F32 (patches, 1176) and image_grid_thw I64 (1, 3).\n"
    "\n"
    "options:\n"
    "  --config FILE   preprocessor_config.json (default: Qwen2.5-VL's settings)\n"
    "  -o, --output F  where to write the safetensors file\n"
    "  --json          print {\"image_grid_thw\":[t,h,w], ...} instead of text\n";

static char *default_output(const char *image) {
  const char *base = strrchr(image, '/');
  base = base ? base + 1 : image;
  char *out = NULL;
  if (asprintf(&out, "%s.safetensors", base) < 0) return NULL;
  return out;
}

static aqs_status write_pixels(const char *path, const aqs_qwen_pixels *px, aqs_err *err) {
  int64_t pv_shape[2] = {px->n_patches, px->patch_dim};
  int64_t grid_shape[2] = {1, 3};
  int64_t grid[3] = {px->grid_t, px->grid_h, px->grid_w};
  aqs_st_write_item items[2] = {
      {"image_grid_thw", AQS_DT_I64, 2, grid_shape, grid},
      {"pixel_values", AQS_DT_F32, 2, pv_shape, px->patches},
  };
  return aqs_st_write_file(path, items, 2, NULL, err);
}

static int preprocess_run(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(preprocess_usage, stdout);
    return AQS_EXIT_OK;
  }
  static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                           {"output", required_argument, NULL, 'o'},
                                           {"json", no_argument, NULL, 'j'},
                                           {NULL, 0, NULL, 0}};
  const char *config = NULL, *output = NULL;
  int as_json = 0, c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
    if (c == 'c') config = optarg;
    else if (c == 'o') output = optarg;
    else if (c == 'j') as_json = 1;
    else return aqs_cli_bad_option("preprocess-image", longopts, argv);
  }
  if (optind != argc - 1) return aqs_cli_usage_error("preprocess-image", "give exactly one IMAGE");
  const char *image_path = argv[optind];
  aqs_err err = {0};
  aqs_qwen_vision_cfg cfg;
  aqs_status st = config ? aqs_qwen_vision_cfg_load(config, &cfg, &err)
                         : (aqs_qwen_vision_cfg_default(&cfg), AQS_OK);
  if (st != AQS_OK) return aqs_cli_fail_err("preprocess-image", &err);
  aqs_image img;
  if ((st = aqs_image_load_file(image_path, 0, &img, &err)) != AQS_OK)
    return aqs_cli_fail_err("preprocess-image", &err);
  aqs_qwen_pixels px;
  st = aqs_qwen_preprocess(&img, &cfg, &px, NULL, &err);
  int width = img.width, height = img.height;
  aqs_image_free(&img);
  if (st != AQS_OK) {
    aqs_err_prefix(&err, "%s", image_path);
    return aqs_cli_fail_err("preprocess-image", &err);
  }
  char *out_path = output ? strdup(output) : default_output(image_path);
  st = out_path ? write_pixels(out_path, &px, &err) : aqs_errf(&err, AQS_ERR_NOMEM, "out of memory");
  int rc = AQS_EXIT_OK;
  if (st != AQS_OK) {
    rc = aqs_cli_fail_err("preprocess-image", &err);
  } else if (as_json) {
    json_t *doc = json_pack("{s:[i,i,i],s:[i,i],s:[i,i],s:I,s:I,s:s}", "image_grid_thw", px.grid_t,
                            px.grid_h, px.grid_w, "input_size", width, height, "resized_size",
                            px.resized_width, px.resized_height, "patches", (json_int_t)px.n_patches,
                            "image_tokens", (json_int_t)aqs_qwen_image_tokens(&px, &cfg), "output",
                            out_path);
    rc = aqs_cli_print_json("preprocess-image", doc);
  } else {
    printf("image_grid_thw %d %d %d\n", px.grid_t, px.grid_h, px.grid_w);
    printf("size %dx%d -> %dx%d, %lld patches, %lld image tokens\n", width, height,
           px.resized_width, px.resized_height, (long long)px.n_patches,
           (long long)aqs_qwen_image_tokens(&px, &cfg));
    printf("wrote %s\n", out_path);
  }
  free(out_path);
  aqs_qwen_pixels_free(&px);
  return rc;
}

const aqs_cmd aqs_cmd_preprocess_image = {
    "preprocess-image", "preprocess one image as Qwen2-VL does; write pixel_values", preprocess_run};
