#!/usr/bin/env python3
"""Convert the UCI Online Retail spreadsheet ("Online Retail.xlsx") to the CSV that shoprec reads.

The output has the header
InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
and one line per spreadsheet row, UTF-8 with LF line ends and minimal quoting:
- InvoiceDate is `YYYY-MM-DD HH:MM:SS`, rounded to the second, in the sheet's own
  time (UK local time, no zone).
- CustomerID is an integer string such as `17850`, or empty for guest checkouts.
- InvoiceNo, StockCode and Quantity drop the `.0` of integral numbers.
- UnitPrice keeps Python's shortest float form, such as `2.55` or `0.0`.
- Description and Country are copied unchanged, trailing spaces included.

Usage: xlsx_to_csv.py INPUT.xlsx [OUTPUT.csv]   (OUTPUT defaults to standard output)
Needs openpyxl. Prints the number of data rows written to standard error.

NOTE: tested on a spreadsheet rebuilt from a CSV copy of the data set, typed like the
original (InvoiceDate as datetimes, CustomerID as floats, empty descriptions), which
converted back to that CSV byte for byte. It has not been run on the UCI file itself.
"""

import csv
import datetime
import os
import sys
import zipfile

import openpyxl
from openpyxl.utils.datetime import from_excel
from openpyxl.utils.exceptions import InvalidFileException

HEADER = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
UNIT_PRICE = HEADER.index("UnitPrice")
INVOICE_DATE = HEADER.index("InvoiceDate")


def format_datetime(value):
    """Format a cell value as `YYYY-MM-DD HH:MM:SS`, rounding to the nearest second.

    Excel stores times as fractions of a day, so a minute such as 08:26 can come back
    as 08:25:59.999999.
    """
    if isinstance(value, (int, float)):
        value = from_excel(value)
    if not isinstance(value, datetime.datetime):
        raise ValueError(f"InvoiceDate {value!r} is not a date")
    rounded = (value + datetime.timedelta(microseconds=500_000)).replace(microsecond=0)
    return rounded.strftime("%Y-%m-%d %H:%M:%S")


def format_number(value):
    """Format a cell value, writing integral floats without `.0` (17850.0 becomes 17850)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime.datetime, datetime.date)):
        raise ValueError(f"unexpected date {value!r} outside the InvoiceDate column")
    return str(value)


def format_price(value):
    """Format UnitPrice as Python's shortest float form, so 1 becomes 1.0 and 2.55 stays 2.55."""
    if value is None:
        return ""
    return repr(float(value))


def format_row(values):
    """Format one spreadsheet row as the eight CSV fields, padding missing cells with empty ones."""
    cells = list(values)
    extra = [value for value in cells[len(HEADER) :] if value is not None]
    if extra:
        raise ValueError(f"unexpected values {extra!r} after the Country column")
    cells = cells[: len(HEADER)] + [None] * (len(HEADER) - len(cells))

    fields = []
    for column, value in enumerate(cells):
        if column == INVOICE_DATE:
            fields.append(format_datetime(value))
        elif column == UNIT_PRICE:
            fields.append(format_price(value))
        else:
            fields.append(format_number(value))
    return fields


def convert(xlsx_path, output):
    """Write the first worksheet of `xlsx_path` to `output` as CSV and return the data row count."""
    workbook = openpyxl.load_workbook(xlsx_path, read_only=True, data_only=True)
    try:
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)

        header = [str(cell).strip() if cell is not None else "" for cell in next(rows, ())]
        while header and header[-1] == "":
            header.pop()
        if header != HEADER:
            raise ValueError(
                f"header {','.join(header)!r} is not the Online Retail header "
                f"{','.join(HEADER)!r}. Check that this is the UCI Online Retail spreadsheet"
            )

        writer = csv.writer(output, lineterminator="\n")
        writer.writerow(HEADER)
        count = 0
        for line_number, values in enumerate(rows, start=2):
            if all(value is None for value in values):
                continue
            try:
                writer.writerow(format_row(values))
            except ValueError as error:
                raise ValueError(f"row {line_number}: {error}") from error
            count += 1
        return count
    finally:
        workbook.close()


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2

    xlsx_path = argv[1]
    output_path = argv[2] if len(argv) == 3 and argv[2] != "-" else None
    try:
        if output_path:
            with open(output_path, "w", encoding="utf-8", newline="") as output:
                count = convert(xlsx_path, output)
        else:
            sys.stdout.reconfigure(encoding="utf-8", newline="")
            count = convert(xlsx_path, sys.stdout)
    except (OSError, ValueError, zipfile.BadZipFile, InvalidFileException) as error:
        print(f"error: failed to convert {xlsx_path}: {error}", file=sys.stderr)
        if output_path and os.path.exists(output_path):
            # A partial CSV would pass for a complete one, so it is removed.
            os.remove(output_path)
        return 1

    print(f"wrote {count} rows from {xlsx_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
