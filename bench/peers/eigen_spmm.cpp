// Eigen peer for `nanosparse bench kernels`: Y = S * X with S an Eigen::SparseMatrix<float, RowMajor> built from
// the CSR files the bench wrote, X dense (K x N). Threads: OpenMP (OMP_NUM_THREADS) via Eigen::setNbThreads.
// Usage: eigen_spmm MANIFEST.json OUT.json ; writes {case_id: median_ms}.
// The manifest is parsed with a few string searches (no JSON library on purpose: only our own writer feeds it).
#include <Eigen/Dense>
#include <Eigen/Sparse>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

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

static std::string field(const std::string& obj, const std::string& name) {
    std::string key = "\"" + name + "\":";
    size_t p = obj.find(key);
    if (p == std::string::npos) { std::cerr << "eigen_spmm: missing field " << name << "\n"; std::exit(2); }
    p += key.size();
    if (obj[p] == '"') { size_t e = obj.find('"', p + 1); return obj.substr(p + 1, e - p - 1); }
    size_t e = obj.find_first_of(",}", p);
    return obj.substr(p, e - p);
}

int main(int argc, char** argv) {
    if (argc < 3) { std::cerr << "usage: eigen_spmm MANIFEST OUT\n"; return 2; }
    std::ifstream mf(argv[1]);
    std::stringstream ss; ss << mf.rdbuf();
    std::string json = ss.str();
    int threads = std::stoi(field(json, "threads"));
    int reps = std::stoi(field(json, "reps"));
    Eigen::setNbThreads(threads);
    size_t casesAt = json.find("\"cases\":[");
    std::string out = "{";
    bool first = true;
    for (size_t p = json.find('{', casesAt); p != std::string::npos; p = json.find('{', p + 1)) {
        size_t e = json.find('}', p);
        std::string obj = json.substr(p, e - p + 1);
        std::string id = field(obj, "id");
        int m = std::stoi(field(obj, "m")), k = std::stoi(field(obj, "k")), n = std::stoi(field(obj, "n"));
        auto indptr = load<int>(field(obj, "indptr"));
        auto indices = load<int>(field(obj, "indices"));
        auto data = load<float>(field(obj, "data"));
        auto xv = load<float>(field(obj, "x"));
        Eigen::Map<Eigen::SparseMatrix<float, Eigen::RowMajor>> smap(m, k, (int)data.size(), indptr.data(), indices.data(), data.data());
        Eigen::SparseMatrix<float, Eigen::RowMajor> s = smap;
        Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> x(xv.data(), k, n);
        Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> y(m, n);
        auto run = [&] { y.noalias() = s * x; };
        run();
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
        char buf[256];
        std::snprintf(buf, sizeof buf, "%s\"%s\":%.6f", first ? "" : ",", id.c_str(), samples[samples.size() / 2]);
        out += buf;
        first = false;
        p = e;
    }
    out += "}";
    std::ofstream(argv[2]) << out;
    return 0;
}
