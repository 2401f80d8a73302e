# export/module.cmake: build steps of the export module beyond the glob
# (included by the top-level CMakeLists.txt after baton_export is defined).
#
# ONNX export writes protobuf with protobuf-c. The C code is generated at
# build time by protoc-c from ONNX's own schema, vendored unmodified as
# export/onnx/onnx.proto (see export/onnx/README.md), so the generated
# files never drift from the schema and never sit in the source tree.
if(PROTOBUFC_FOUND AND PROTOC_C)
  set(BATON_ONNX_GEN ${CMAKE_BINARY_DIR}/onnx_gen)
  set(BATON_ONNX_PROTO ${CMAKE_SOURCE_DIR}/export/onnx/onnx.proto)
  add_custom_command(
    OUTPUT ${BATON_ONNX_GEN}/onnx.pb-c.c ${BATON_ONNX_GEN}/onnx.pb-c.h
    COMMAND ${CMAKE_COMMAND} -E make_directory ${BATON_ONNX_GEN}
    COMMAND ${PROTOC_C} --proto_path=${CMAKE_SOURCE_DIR}/export/onnx
            --c_out=${BATON_ONNX_GEN} ${BATON_ONNX_PROTO}
    DEPENDS ${BATON_ONNX_PROTO}
    COMMENT "protoc-c: generating ONNX protobuf code from export/onnx/onnx.proto"
    VERBATIM)
  target_sources(baton_export PRIVATE ${BATON_ONNX_GEN}/onnx.pb-c.c)
  target_include_directories(baton_export PRIVATE ${BATON_ONNX_GEN})
  target_compile_definitions(baton_export PRIVATE BATON_HAVE_ONNX=1)
  # Generated code: not ours to warn about.
  set_source_files_properties(${BATON_ONNX_GEN}/onnx.pb-c.c PROPERTIES
    COMPILE_OPTIONS "-w")
  message(STATUS "baton: ONNX export enabled (protobuf-c ${PROTOBUFC_VERSION}, ${PROTOC_C})")
else()
  message(STATUS "baton: protobuf-c or protoc-c not found: `baton export --format onnx` will report that it is not built")
endif()
