#include "ocellus/io/image.h"

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"

namespace ocellus::io {
namespace {

constexpr int64_t kMaxDeflateRatio = 1032;

void check_size(const std::string& name, int64_t w, int64_t h) {
  OCELLUS_CHECK(w > 0 && h > 0, name, ": image has no pixels (", w, "x", h, ")");
  OCELLUS_CHECK(w * h <= kMaxImagePixels, name, ": image declares ", w, "x", h, " = ", w * h,
                " pixels, more than the limit of ", kMaxImagePixels, " (a damaged or hostile file?)");
}

// ---- PNG (libpng's classic API: the simplified one composites alpha and linearizes 16-bit) ----

struct PngSource {
  const uint8_t* data;
  size_t size, pos;
};

struct PngState {
  char message[200] = "";
  ImageRgb8 img;
  std::vector<uint8_t> rgba;  // the decoded rows, RGB or RGBA
  std::vector<png_bytep> rows;
};

void png_fail(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof(st->message), "%s", msg);
  png_longjmp(png, 1);
}
void png_warn(png_structp, png_const_charp) {}  // benign (e.g. unknown chunks): PIL ignores them too

void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > src->size - src->pos) png_error(png, "file is truncated");
  std::memcpy(out, src->data + src->pos, n);
  src->pos += n;
}

ImageRgb8 decode_png(const uint8_t* data, size_t size, const std::string& name) {
  auto st = std::make_unique<PngState>();
  PngSource src{data, size, 0};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st.get(), png_fail, png_warn);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  // The decoder freed on every way out. Made before the setjmp, and png / info not changed after
  // it, so a longjmp back skips no destructor and leaves them as they were.
  struct Reader {
    png_structp png;
    png_infop info;
    ~Reader() { png_destroy_read_struct(&png, &info, nullptr); }  // null ones are skipped
  } reader{png, info};
  OCELLUS_CHECK(png && info, name, ": out of memory starting the PNG decoder");
  if (setjmp(png_jmpbuf(png))) fail(name, ": corrupt PNG: ", st->message);
  png_set_read_fn(png, &src, png_read_mem);
  png_set_user_limits(png, 1u << 20, 1u << 20);
  png_read_info(png, info);
  const int64_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  check_size(name, w, h);
  // Deflate expands at most 1032-fold (a 258-byte match in 2 bits), so the file's size bounds the
  // image data it can hold: a small file declaring a large image is refused before allocating.
  const int64_t data_bytes = w * h * png_get_channels(png, info) * png_get_bit_depth(png, info) / 8;
  if (data_bytes > kMaxDeflateRatio * int64_t(size))
    fail(name, ": PNG declares ", w, "x", h, " pixels (", data_bytes, " bytes of image data), more than a file of ",
         size, " bytes can hold (truncated or damaged?)");
  const int color = png_get_color_type(png, info);
  // Everything to 8-bit RGB(A): palette and low-bit grey expanded, tRNS to alpha, 16-bit
  // samples to their high byte (as PIL reads 16-bit RGB), grey replicated.
  png_set_expand(png);
  png_set_strip_16(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_strip_alpha(png);
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  if (row_bytes != size_t(w) * 3) fail(name, ": PNG decodes to ", row_bytes, " bytes per row, expected ", w * 3);
  st->img.width = int(w);
  st->img.height = int(h);
  if (passes == 1) {
    // Row by row into memory reserved but not touched: a file within the bound above whose data
    // still ends early has taken memory only for the rows it held.
    st->img.rgb.reserve(size_t(w * h * 3));
    for (int64_t y = 0; y < h; ++y) {
      st->img.rgb.resize(size_t(y + 1) * row_bytes);
      png_read_row(png, st->img.rgb.data() + size_t(y) * row_bytes, nullptr);
    }
  } else {  // Adam7 passes revisit every row: the whole image first
    st->img.rgb.resize(size_t(w * h * 3));
    st->rows.resize(size_t(h));
    for (int64_t y = 0; y < h; ++y) st->rows[size_t(y)] = st->img.rgb.data() + size_t(y) * row_bytes;
    png_read_image(png, st->rows.data());
  }
  png_read_end(png, nullptr);
  return std::move(st->img);
}

// ---- JPEG (libjpeg-turbo, the library PIL decodes with; same default DCT and upsampling) ----

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = "";
  bool truncated = false;
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

// Warnings: libjpeg fills missing data with grey and carries on; a truncated file is an error
// here (as PIL's "image file is truncated"); other warnings are benign.
void jpeg_message(j_common_ptr cinfo, int level) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  if (level < 0 && (cinfo->err->msg_code == JWRN_JPEG_EOF || cinfo->err->msg_code == JWRN_HIT_MARKER)) {
    e->truncated = true;
    (*cinfo->err->format_message)(cinfo, e->message);
  }
}

uint8_t muldiv255(int a, int b) {
  const int t = a * b + 128;
  return uint8_t((t + (t >> 8)) >> 8);
}

ImageRgb8 decode_jpeg(const uint8_t* data, size_t size, const std::string& name) {
  auto img = std::make_unique<ImageRgb8>();
  auto row = std::make_unique<std::vector<uint8_t>>();
  jpeg_decompress_struct cinfo{};
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_message;
  // The decoder freed on every way out (made before the setjmp: a longjmp back skips no destructor).
  struct Decompressor {
    jpeg_decompress_struct* c;
    ~Decompressor() { jpeg_destroy_decompress(c); }
  } decompressor{&cinfo};
  if (setjmp(err.jump)) fail(name, ": corrupt JPEG: ", err.message);
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  check_size(name, cinfo.image_width, cinfo.image_height);
  // Huffman coding spends at least 2 bits on every 8x8 block (a DC code and an end-of-block
  // code) and a progressive file's first DC scan at least 1, so the file's size bounds the image
  // it can hold: a small file declaring a large image is refused before anything is allocated
  // (libjpeg would pad the missing data with grey). Arithmetic coding has no such minimum (and
  // pads silently): those rare files get deflate's bound, 1032 bytes of samples per file byte.
  {
    const int64_t w = cinfo.image_width, h = cinfo.image_height;
    int64_t blocks = 0;
    for (int c = 0; c < cinfo.num_components; ++c)
      blocks += int64_t(cinfo.comp_info[c].width_in_blocks) * cinfo.comp_info[c].height_in_blocks;
    const int64_t min_bytes = cinfo.arith_code ? w * h * cinfo.num_components / kMaxDeflateRatio
                                               : (cinfo.progressive_mode ? blocks / 8 : blocks / 4);
    if (min_bytes > int64_t(size))
      fail(name, ": ", cinfo.arith_code ? "arithmetic-coded " : "", "JPEG declares ", w, "x", h, " pixels, which take at least ",
           min_bytes, " bytes of coded data, more than the file's ", size, " bytes (truncated or damaged?)");
  }
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  const int w = int(cinfo.output_width), h = int(cinfo.output_height), nc = cinfo.output_components;
  img->width = w;
  img->height = h;
  // Address space for the whole image, but memory only for the rows decoded so far (reserve
  // touches no page): a file within the bound above whose data still ends early fails after the
  // work its data justified.
  img->rgb.reserve(size_t(w) * size_t(h) * 3);
  row->resize(size_t(w) * size_t(nc));
  while (cinfo.output_scanline < cinfo.output_height && !err.truncated) {
    img->rgb.resize(size_t(cinfo.output_scanline + 1) * size_t(w) * 3);
    uint8_t* dst = img->rgb.data() + size_t(cinfo.output_scanline) * size_t(w) * 3;
    JSAMPROW r = row->data();
    jpeg_read_scanlines(&cinfo, &r, 1);
    if (!cmyk) {
      std::memcpy(dst, row->data(), size_t(w) * 3);
      continue;
    }
    // Adobe CMYK JPEGs store inverted inks; PIL reads them as "CMYK;I" and converts with
    // R = (255 - K) - C (255 - K) / 255.
    const bool inverted = cinfo.saw_Adobe_marker;
    for (int x = 0; x < w; ++x) {
      const uint8_t* p = row->data() + size_t(x) * 4;
      const int k = inverted ? p[3] : 255 - p[3];
      for (int c = 0; c < 3; ++c) {
        const int ink = inverted ? 255 - p[c] : p[c];
        dst[x * 3 + c] = uint8_t(k - muldiv255(ink, k));
      }
    }
  }
  if (err.truncated) fail(name, ": truncated or corrupt JPEG (", err.message, ")");
  jpeg_finish_decompress(&cinfo);
  return std::move(*img);
}

}  // namespace

ImageRgb8 decode_image(const uint8_t* data, size_t size, const std::string& name) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return decode_png(data, size, name);
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return decode_jpeg(data, size, name);
  OCELLUS_CHECK(size > 0, name, ": empty file, not an image");
  fail(name, ": not a PNG or JPEG image (unrecognized first bytes)");
}

ImageRgb8 load_image(const std::string& path) {
  const std::string bytes = read_text_file(path, size_t(1) << 30);
  return decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
}

void save_png(const std::string& path, const ImageRgb8& img) {
  OCELLUS_CHECK(img.width > 0 && img.height > 0 && img.rgb.size() == size_t(img.width) * size_t(img.height) * 3,
                path, ": image to save has inconsistent size");
  write_file_atomically(path, [&](std::FILE* f) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png ? png_create_info_struct(png) : nullptr;
    OCELLUS_CHECK(png && info, path, ": out of memory starting the PNG encoder");
    if (setjmp(png_jmpbuf(png))) {
      png_destroy_write_struct(&png, &info);
      fail(path, ": PNG encoding failed");
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, png_uint_32(img.width), png_uint_32(img.height), 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < img.height; ++y)
      png_write_row(png, const_cast<png_bytep>(img.rgb.data() + size_t(y) * size_t(img.width) * 3));
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
  });
}

}  // namespace ocellus::io
