# embed_bytes.cmake - helpers for the build-time scripts (run with `cmake -P`) that compile
# files into C as byte arrays: broker/embed_lua.cmake (the Lua scripts) and
# daemon/web/embed_assets.cmake (the dashboard). A byte array needs no escaping and meets
# no compiler limit on string literals; all of this needs nothing but cmake.

# embed_bytes_from_hex(HEX BYTES_VAR LEN_VAR): HEX is lowercase hex digits (as
# `file(READ ... HEX)` or `string(HEX ...)` give them); sets BYTES_VAR to the C initialiser
# text "0x..,0x..," (16 bytes a line, each new line indented 4) and LEN_VAR to the number
# of bytes. The caller closes the array, e.g. with "0x00}" for a terminating NUL.
function(embed_bytes_from_hex hex bytes_var len_var)
  string(LENGTH "${hex}" hexlen)
  math(EXPR len "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REPEAT "0x[0-9a-f][0-9a-f]," 16 row)
  string(REGEX REPLACE "(${row})" "\\1\n    " bytes "${bytes}")
  set(${bytes_var} "${bytes}" PARENT_SCOPE)
  set(${len_var} "${len}" PARENT_SCOPE)
endfunction()

# embed_write_if_changed(OUT TEXT): writes TEXT to OUT only when it differs from what OUT
# holds, so an unchanged input does not trigger a rebuild of what includes OUT.
function(embed_write_if_changed out text)
  if(EXISTS "${out}")
    file(READ "${out}" old)
    if(old STREQUAL text)
      return()
    endif()
  endif()
  file(WRITE "${out}" "${text}")
endfunction()
