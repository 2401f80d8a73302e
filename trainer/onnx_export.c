#include "export.h"
#include "util.h"
int bt_onnx_export(const bt_export_model *x, const char *zPath) {
  (void)x;
  return bt_err_set("%s: ONNX export not built yet", zPath);
}
