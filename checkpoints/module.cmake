# checkpoints/module.cmake: extra build steps of the checkpoint module.
#
# BATON_FUZZ=ON (configure with CC=clang): builds `fuzz_ckpt`, the libFuzzer
# target of the checkpoint reader (tests/ckpt/fuzz/fuzz_ckpt.c). It links
# the reader's sources and base/util.c, base/cli.c directly, not baton_lib, so the
# fuzzer instruments only what it attacks. tests/ckpt/fuzz.sh does the same
# build without CMake and runs it.
if(BATON_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "BATON_FUZZ=ON needs clang (configure with CC=clang)")
  endif()
  add_executable(fuzz_ckpt
    ${CMAKE_SOURCE_DIR}/tests/ckpt/fuzz/fuzz_ckpt.c
    ${CMAKE_SOURCE_DIR}/checkpoints/codec.c
    ${CMAKE_SOURCE_DIR}/checkpoints/reader.c
    ${CMAKE_SOURCE_DIR}/base/util.c
    ${CMAKE_SOURCE_DIR}/base/cli.c)
  target_compile_options(fuzz_ckpt PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_ckpt PRIVATE -fsanitize=fuzzer,address,undefined)
  target_include_directories(fuzz_ckpt PRIVATE ${CMAKE_SOURCE_DIR} ${MPI_C_INCLUDE_DIRS})
  target_link_libraries(fuzz_ckpt PRIVATE PkgConfig::ZSTD PkgConfig::XXHASH PkgConfig::CJSON m)
endif()

# The checkpoint benchmark (bench/ckpt/bench_ckpt.c; figures in
# docs/checkpoints.md). Not a test: run build/bench_ckpt by hand.
if(EXISTS ${CMAKE_SOURCE_DIR}/bench/ckpt/bench_ckpt.c)
  add_executable(bench_ckpt ${CMAKE_SOURCE_DIR}/bench/ckpt/bench_ckpt.c)
  target_link_libraries(bench_ckpt PRIVATE baton_lib)
  set_target_properties(bench_ckpt PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
endif()
