# embed.cmake: turn the file IN into a C source OUT defining
#   const unsigned char srv_webui_html[]; const unsigned long srv_webui_html_len;
# (run at build time with cmake -P; no xxd needed).
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE ${OUT} "/* generated from ${IN} by cmake/embed.cmake */\n"
     "const unsigned char srv_webui_html[] = {${body}0x00};\n"
     "const unsigned long srv_webui_html_len = ${len};\n")
