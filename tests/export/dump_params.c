/*
 * dump_params.c: test helper. Loads a checkpoint exactly as `baton export`
 * does (bt_export_load_ckpt) and writes OUT.bin (the nParam fp32
 * parameters, raw) and OUT.json (the tensor table: name, offset, shape in
 * baton's own naming), so Python can compare an export against the
 * checkpoint's parameters without decoding the checkpoint format.
 * usage: dump_params CKPT_OR_RUN_DIR OUT
 */
#include "base/util.h"
#include "export/export.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: dump_params CKPT OUT\n");
    return 2;
  }
  bt_export_model x;
  if (bt_export_load_ckpt(&x, argv[1], 1, NULL) != BT_OK) {
    fprintf(stderr, "dump_params: %s\n", bt_err_msg());
    bt_export_model_free(&x);
    return 1;
  }
  char z[4096];
  snprintf(z, sizeof z, "%s.bin", argv[2]);
  int rc = bt_file_write_atomic(z, x.hostParams, x.m.nParam * sizeof(float));
  snprintf(z, sizeof z, "%s.json", argv[2]);
  FILE *f = fopen(z, "w");
  if (rc != BT_OK || !f) {
    fprintf(stderr, "dump_params: cannot write %s\n", z);
    return 1;
  }
  fprintf(f, "{\"kind\": \"%s\", \"vocab_size\": %d, \"tensors\": [\n",
          x.m.eKind == BT_MODEL_GPT ? "gpt" : "mlp", x.m.V);
  for (int i = 0; i < x.m.nTensor; i++) {
    const bt_tensor *t = &x.m.aTensor[i];
    fprintf(f, " {\"name\": \"%s\", \"offset\": %zu, \"shape\": [%d", t->zName,
            t->offset, t->shape[0]);
    for (int d = 1; d < t->ndim; d++) fprintf(f, ", %d", t->shape[d]);
    fprintf(f, "]}%s\n", i + 1 < x.m.nTensor ? "," : "");
  }
  fprintf(f, "]}\n");
  fclose(f);
  bt_export_model_free(&x);
  return 0;
}
