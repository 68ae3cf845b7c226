# cmake -DIN=file -DOUT=file.c -DNAME=symbol -P embed.cmake
# Writes `const char NAME[]` holding IN's bytes and a final NUL, so a file
# (the status page) ships inside the binary and works offline.
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}" "/* Generated from ${IN} by cmake/embed.cmake; do not edit. */\nconst char ${NAME}[] = {\n${bytes}0x00};\n")
