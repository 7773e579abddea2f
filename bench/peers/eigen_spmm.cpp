// Eigen peer for `nanosparse bench kernels`: Y = S * X with S an Eigen::SparseMatrix<float, RowMajor> built from the
// CSR files the bench wrote and X dense row-major (K x N). Runs as a server so each case is timed right after
// NanoSparse times it: one request per line on stdin, "M K N INDPTR INDICES DATA X" (paths of raw int32/float32
// files), one reply per line on stdout: the median ms. Usage: eigen_spmm THREADS REPS (OpenMP threads).
#include <Eigen/Dense>
#include <Eigen/Sparse>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

template <typename T>
static std::vector<T> load(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) { std::cerr << "eigen_spmm: cannot open " << path << "\n"; std::exit(2); }
    std::streamsize size = f.tellg();
    f.seekg(0);
    std::vector<T> v(size / sizeof(T));
    f.read(reinterpret_cast<char*>(v.data()), size);
    return v;
}

int main(int argc, char** argv) {
    if (argc < 3) { std::cerr << "usage: eigen_spmm THREADS REPS\n"; return 2; }
    int threads = std::stoi(argv[1]), reps = std::stoi(argv[2]);
    Eigen::setNbThreads(threads);
    std::cout << "ready " << Eigen::nbThreads() << std::endl;
    int m, k, n;
    std::string indptrPath, indicesPath, dataPath, xPath;
    while (std::cin >> m >> k >> n >> indptrPath >> indicesPath >> dataPath >> xPath) {
        auto indptr = load<int>(indptrPath);
        auto indices = load<int>(indicesPath);
        auto data = load<float>(dataPath);
        auto xv = load<float>(xPath);
        Eigen::Map<Eigen::SparseMatrix<float, Eigen::RowMajor>> smap(m, k, (int)data.size(), indptr.data(), indices.data(), data.data());
        Eigen::SparseMatrix<float, Eigen::RowMajor> s = smap;
        Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> x(xv.data(), k, n);
        Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> y(m, n);
        // N = 1: a vector (one column at compile time), so Eigen takes its sparse matrix-vector product.
        Eigen::Map<Eigen::VectorXf> xVector(xv.data(), k);
        Eigen::VectorXf yVector(m);
        auto run = [&] {
            if (n == 1) yVector.noalias() = s * xVector;
            else y.noalias() = s * x;
        };
        // Untimed for 30 ms first, like every contender (an idle virtual core needs 10-30 ms of work to run at full speed).
        auto w = std::chrono::steady_clock::now();
        do run(); while (std::chrono::duration<double>(std::chrono::steady_clock::now() - w).count() < 0.03);
        auto t0 = std::chrono::steady_clock::now();
        run();
        double once = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        int iters = once < 5e-4 ? std::min(1000, (int)(5e-4 / std::max(once, 1e-9)) + 1) : 1;
        std::vector<double> samples;
        for (int r = 0; r < reps; r++) {
            auto a = std::chrono::steady_clock::now();
            for (int i = 0; i < iters; i++) run();
            samples.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count() / iters * 1e3);
        }
        std::sort(samples.begin(), samples.end());
        std::printf("%.6f\n", samples[samples.size() / 2]);
        std::fflush(stdout);
    }
    return 0;
}
