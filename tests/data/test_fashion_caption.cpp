// The fashion-vqa caption (data/fashion_vqa.h): the builder's words, and the parser that reads
// them back (eval-fusion reads the test captions and the captions a model writes with it).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "ocellus/core/error.h"
#include "ocellus/data/fashion_vqa.h"

using namespace ocellus;

TEST(FashionCaption, WritesTheDatasetsWords) {
  EXPECT_EQ(data::fashion_caption({1, 7, -1, 9}, 2), "a trouser in the top left, a sneaker in the top right and an ankle boot in the bottom right");
  EXPECT_EQ(data::fashion_caption({-1, -1, 8, -1}, 2), "a bag in the bottom left");
  EXPECT_EQ(data::fashion_caption({-1, 0, -1, -1, 4, -1, -1, -1, 3}, 3), "a t-shirt in the top centre, a coat in the middle and a dress in the bottom right");
  EXPECT_THROW(data::fashion_caption({1, 2, 3}, 2), Error);
}

// Every layout of a 2x2 grid with at least one item (11^4 - 1 of them) comes back from its
// caption, so no two layouts share a caption.
TEST(FashionCaption, ParserRoundTripsEveryCaptionOfA2x2Grid) {
  int64_t n = 0;
  for (int code = 1; code < 11 * 11 * 11 * 11; ++code) {
    std::vector<int> cells;
    for (int c = 0, k = code; c < 4; ++c, k /= 11) cells.push_back(k % 11 - 1);
    const std::string cap = data::fashion_caption(cells, 2);
    const auto back = data::parse_fashion_caption(cap, 2);
    ASSERT_TRUE(back.has_value()) << cap;
    ASSERT_EQ(*back, cells) << cap;
    ++n;
  }
  EXPECT_EQ(n, 14640);
}

TEST(FashionCaption, ParserRoundTripsCaptionsOfA3x3Grid) {
  std::mt19937 rng(3);
  for (int i = 0; i < 3000; ++i) {
    std::vector<int> cells(9, -1);
    cells[rng() % 9] = int(rng() % 10);  // at least one item
    for (int& c : cells)
      if (rng() % 2) c = int(rng() % 11) - 1;
    if (std::count(cells.begin(), cells.end(), -1) == 9) continue;
    const std::string cap = data::fashion_caption(cells, 3);
    const auto back = data::parse_fashion_caption(cap, 3);
    ASSERT_TRUE(back.has_value()) << cap;
    EXPECT_EQ(*back, cells) << cap;
  }
}

TEST(FashionCaption, ParserRejectsWhatTheBuilderDoesNotWrite) {
  const char* bad[] = {
      "",
      "a trouser in the top left and",                              // a dangling joint
      "a trouser in the top left, a sneaker in the top right",      // the last joined by ", "
      "a trouser in the top left and a sneaker in the top right and a bag in the bottom left",
      "an trouser in the top left",                                 // the article
      "A trouser in the top left",
      "the trouser in the top left",
      "a trousers in the top left",                                 // not a class
      "a trouser in the top middle",                                // not a cell
      "a trouser in the middle",                                    // a cell of a 3x3 grid only
      "a trouser in the top left.",
      " a trouser in the top left",
      "a trouser in the top left ",
      "a sneaker in the top right and a trouser in the top left",  // cells out of order
      "a trouser in the top left and a bag in the top left",       // a cell twice
      "a trouser at the top left",
      "nothing",
  };
  for (const char* c : bad) EXPECT_FALSE(data::parse_fashion_caption(c, 2).has_value()) << "'" << c << "'";
  EXPECT_TRUE(data::parse_fashion_caption("a trouser in the middle", 3).has_value());
  EXPECT_THROW(data::parse_fashion_caption("a trouser in the top left", 4), Error);
}
