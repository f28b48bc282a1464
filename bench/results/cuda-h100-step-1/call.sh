# The two calls on the H100 (beast at 7d514dc, llama.cpp 0c1e57098 from the
# llama-cpp-python sdist). The first ran out of its DEADLINE before the 8B
# rounds (the peer build took 248 s; its 1B table is table-first-call.md);
# the second, on the same warm machine a minute later, ran every round again.
# call 1:
(setsid nohup bash bench/peer-cuda.sh /tmp/peer > /tmp/peer.log 2>&1 &)
BEAST_COMMIT=7d514dc bash bench/gpu-dev.sh test decode decode=BEAST_CUDA_STEP=0 \
    decode=BEAST_CUDA_STEP_TRACE=1,BEAST_CUDA_GRAPHS=0        # -> dev-decode.txt
BEAST_BIN=/tmp/beast-build DEADLINE=250 OUT=$OUT timeout 290 bash bench/gpu-compare.sh ceil,bench,load
# call 2:
BEAST_BIN=/tmp/beast-build DEADLINE=200 OUT=$OUT timeout 280 bash bench/gpu-compare.sh ceil,bench,load
