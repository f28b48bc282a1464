# The H100 call of session 8 (llama.cpp 0c1e57098 from the llama-cpp-python sdist), beast at c58f288.
# All files here: test_cuda.txt (3842 checks passed), dev.txt (bench_decode, serial beast_decode
# steps), then one comparison round with beast bench tg running ahead (beast.csv) and waiting for
# every step (BEAST_GEN_AHEAD=0, beast-serial.csv), alternating with llama-bench (llama.csv).
(setsid nohup bash bench/peer-cuda.sh /tmp/peer > /tmp/peer.log 2>&1 &)
BEAST_COMMIT=c58f288 OUT=$OUT bash bench/gpu-dev.sh test decode
BEAST_BIN=/tmp/beast-build DEADLINE=300 OUT=$OUT timeout 340 bash bench/gpu-compare.sh ceil,bench,serial,load
# repeat-6b71432/: the final commit of the session, test_cuda (3606 checks passed) and the same comparison
(setsid nohup bash bench/peer-cuda.sh /tmp/peer > /tmp/peer.log 2>&1 &)
BEAST_COMMIT=6b71432 OUT=$OUT bash bench/gpu-dev.sh test
BEAST_BIN=/tmp/beast-build DEADLINE=300 OUT=$OUT timeout 340 bash bench/gpu-compare.sh ceil,bench,serial
# mends-243c3a5/: after the review mends, test_cuda (3626 checks passed) and beast bench tg128 on the
# 1B shape alone (no peer in this call), ahead and BEAST_GEN_AHEAD=0, two rounds
BEAST_COMMIT=243c3a5 OUT=$OUT bash bench/gpu-dev.sh test
beast-gen --preset llama-1b --type Q4_K_M -q -o /tmp/l1b.gguf
for r in 1 2; do beast bench -m /tmp/l1b.gguf -p 0 -n 128 -r 5 -o csv; BEAST_GEN_AHEAD=0 beast bench -m /tmp/l1b.gguf -p 0 -n 128 -r 5 -o csv; done
