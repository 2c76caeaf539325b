"""Unit tests of the answer checksums and the agreement check (standard library only):
python3 -m unittest discover -s bench -t bench (run by tests/tests/bench_compare.rs)."""

import datetime
import decimal
import unittest

from tallybench import canonical, report
from tallybench.results import Result


class ChecksumTest(unittest.TestCase):
    def test_decimal_float_and_csv_text_of_one_answer_agree(self):
        duckdb_like = [("A", decimal.Decimal("37734107.00"), 25.522005853257337, datetime.date(1995, 3, 15))]
        spark_like = [("A", decimal.Decimal("37734107"), decimal.Decimal("25.522006"), datetime.date(1995, 3, 15))]
        csv_like = [["A", "37734107.00", "25.522005", "1995-03-15"]]
        self.assertEqual(canonical.checksum(duckdb_like), canonical.checksum(spark_like))
        self.assertEqual(canonical.checksum(duckdb_like), canonical.checksum(csv_like))

    def test_row_order_does_not_count(self):
        self.assertEqual(
            canonical.checksum([("b", 2), ("a", 1)]), canonical.checksum([["a", "1"], ["b", "2"]])
        )

    def test_a_different_value_changes_the_checksum(self):
        self.assertNotEqual(canonical.checksum([("a", 1.0)]), canonical.checksum([("a", 1.01)]))
        self.assertNotEqual(canonical.checksum([("a", 1)]), canonical.checksum([("a", 1), ("a", 1)]))

    def test_negative_zero_null_and_empty_text(self):
        self.assertEqual(canonical.checksum([(-0.001, None)]), canonical.checksum([["0.00", ""]]))

    def test_text_that_is_not_a_number_stays_as_it_is(self):
        self.assertEqual(canonical.canonical_value("25-989-741-2988"), "25-989-741-2988")
        self.assertEqual(canonical.canonical_value("1e3"), "1000.00")


class AgreementTest(unittest.TestCase):
    def test_the_engine_that_disagrees_with_the_others_is_named(self):
        results = {
            "tally": {"q1": Result([1.0], 4, "aaa")},
            "datafusion": {"q1": Result([1.0], 4, "aaa")},
            "duckdb": {"q1": Result([1.0], 4, "bbb")},
        }
        self.assertEqual(report.agreement(results, ["q1"]), {"q1": ("aaa", ["duckdb"])})

    def test_failed_engines_are_left_out(self):
        results = {
            "tally": {"q1": Result([1.0], 4, "aaa")},
            "duckdb": {"q1": Result.failed("boom")},
        }
        self.assertEqual(report.agreement(results, ["q1"]), {"q1": ("aaa", [])})


if __name__ == "__main__":
    unittest.main()
