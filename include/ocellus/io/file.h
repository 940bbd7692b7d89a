#pragma once
// Whole-file helpers shared by the format readers and writers.
#include <cstdio>
#include <functional>
#include <string>

namespace ocellus::io {

// Writes `path` through a temporary file in the same directory, flushed to disk, then renamed
// over `path`: a reader never sees a partial file, and a crash mid-write leaves any previous
// file intact. `body` writes through the FILE*; an exception from it removes the temporary.
void write_file_atomically(const std::string& path, const std::function<void(std::FILE*)>& body);

// The same for a whole text (JSON, a small state file).
void write_text_file_atomically(const std::string& path, const std::string& text);

// fwrite that throws an Error naming `path` on a short write (disk full, I/O error).
void write_bytes(std::FILE* f, const void* data, size_t n, const std::string& path);

// A whole (small) file as a string, e.g. JSON; throws naming the file if unreadable or larger
// than max_bytes.
std::string read_text_file(const std::string& path, size_t max_bytes = size_t(256) << 20);

bool is_directory(const std::string& path);
std::string parent_dir(const std::string& path);  // "." for a bare file name
bool is_file(const std::string& path);  // a regular file

}  // namespace ocellus::io
