/* h5.c: HDF5 source (stub until the reader lands). */
#include <pthread.h>
#include "data/loader_impl.h"
#include "util.h"

static pthread_mutex_t g_h5Lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
void bt_h5_lock(void) { pthread_mutex_lock(&g_h5Lock); }
void bt_h5_unlock(void) { pthread_mutex_unlock(&g_h5Lock); }

int bt_h5_open(bt_source **ppSrc, const bt_loader_config *pCfg) {
  *ppSrc = NULL;
  return bt_err_set("%s: HDF5 reader not implemented yet", pCfg->zPath);
}
int bt_prepare_main(int argc, char **argv) { (void)argc; (void)argv; return 1; }
