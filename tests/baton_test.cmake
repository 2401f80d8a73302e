# Helpers shared by every test directory.
#
# baton_add_c_test(NAME name SOURCES a.c ... [LABELS l ...] [ARGS ...])
#   builds a C test program linked with baton_lib and registers it.
# MPIEXEC_OVERSUBSCRIBE holds the mpirun prefix that works as root and on
# a 2-core machine: use it for multi-rank tests.
set(MPIEXEC_OVERSUBSCRIBE ${MPIEXEC_EXECUTABLE} --oversubscribe --allow-run-as-root
    --mca btl self,vader --mca btl_vader_single_copy_mechanism none)
# The same prefix as one string, for shell scripts (MPIRUN in their env).
string(REPLACE ";" " " MPIEXEC_OVERSUBSCRIBE_STR "${MPIEXEC_OVERSUBSCRIBE}")
set(BATON_BIN $<TARGET_FILE:baton>)
# Python for reference tests: the venv made by tests/pyenv.sh (Debian's
# torch/numpy/h5py plus pinned PyPI packages) when the Makefile names it.
if(BATON_PYTHON_ENV)
  set(BATON_PYTHON ${BATON_PYTHON_ENV}/bin/python3)
else()
  set(BATON_PYTHON /usr/bin/python3)
endif()

function(baton_add_c_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LABELS;ARGS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE baton_lib)
  target_include_directories(${T_NAME} PRIVATE ${CMAKE_SOURCE_DIR}/tests)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} ${T_ARGS})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT})
endfunction()

# baton_add_fuzz_replay(NAME name TARGET target.c CORPUS dir MIN_ACCEPTED n
#                       [LABELS l ...] [TIMEOUT s])
#   links the one replay driver (tests/fuzz/replay.c) with a libFuzzer
#   target's LLVMFuzzerTestOneInput and registers a test that replays the
#   corpus and fails if fewer than n inputs are accepted. Set n to what the
#   reader accepts of the corpus today (`build/tests/<dir>/<name> -v DIR`
#   lists each verdict), so that a reader that rejects valid input fails.
function(baton_add_fuzz_replay)
  cmake_parse_arguments(F "" "NAME;TARGET;CORPUS;MIN_ACCEPTED;TIMEOUT" "LABELS" ${ARGN})
  add_executable(${F_NAME} ${CMAKE_SOURCE_DIR}/tests/fuzz/replay.c ${F_TARGET})
  target_link_libraries(${F_NAME} PRIVATE baton_lib)
  add_test(NAME ${F_NAME} COMMAND ${F_NAME} --min-accepted ${F_MIN_ACCEPTED} ${F_CORPUS})
  if(NOT F_TIMEOUT)
    set(F_TIMEOUT 120)
  endif()
  set_tests_properties(${F_NAME} PROPERTIES LABELS "${F_LABELS}" TIMEOUT ${F_TIMEOUT})
endfunction()
