# The H100 calls of session 7 (llama.cpp 0c1e57098 from the llama-cpp-python sdist).
# dev-6a56ead.txt: the barrier, warp order and attention rework alone
BEAST_COMMIT=6a56ead bash bench/gpu-dev.sh test decode decode=BEAST_CUDA_STEP_TRACE=1,BEAST_CUDA_GRAPHS=0
# dev-l2-prefetch.txt: d99a837 (L2 bulk prefetch, reverted in ec097b8), prefetch distances and split counts
bash bench/gpu-dev.sh decode=BEAST_CUDA_STEP_PF=0 decode=BEAST_CUDA_STEP_PF=2 decode \
    decode=BEAST_CUDA_STEP_PF=8 decode=BEAST_CUDA_STEP_PF=16 decode=BEAST_CUDA_STEP_SPLITS=2 \
    decode=BEAST_CUDA_STEP_SPLITS=1 decode=BEAST_CUDA_STEP_TRACE=1,BEAST_CUDA_GRAPHS=0
# dev.txt, test_cuda.txt, table.md, beast.csv, llama.csv, log.txt: 432f412 against llama.cpp, one call
(setsid nohup bash bench/peer-cuda.sh /tmp/peer > /tmp/peer.log 2>&1 &)
BEAST_COMMIT=432f412 bash bench/gpu-dev.sh test decode decode=BEAST_CUDA_STEP_TRACE=1,BEAST_CUDA_GRAPHS=0
BEAST_BIN=/tmp/beast-build DEADLINE=280 OUT=$OUT timeout 320 bash bench/gpu-compare.sh ceil,bench,load
# test_cuda-164cbd5.txt: the step program's long f16 test added
BEAST_COMMIT=164cbd5 bash bench/gpu-dev.sh test
# dev-907b713.txt, test_cuda-907b713.txt: after the review mends (3262 checks passed; 1B 0.727 ms, 8B 2.738 ms a step)
BEAST_COMMIT=907b713 bash bench/gpu-dev.sh test decode
