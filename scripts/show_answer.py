"""Print an API response of the demo as readable lines.

Usage: show_answer.py KIND < response.json, where KIND is similar, popular,
recommendations, events or preferences. A problem response is printed as such.
"""

import json
import sys


def show_problem(answer):
    print(f"  error {answer.get('status')}: {answer.get('detail')}")


def show_similar(answer):
    print(f"  Items similar to {answer['item_id']} \"{answer['title']}\" (model {answer['model_version']}):")
    for rank, neighbour in enumerate(answer["neighbours"], start=1):
        if neighbour.get("kind") == "title":
            reason = "similar title (nobody has bought this item yet)"
        else:
            reason = f"bought together by {neighbour['support']} customers"
        print(f"  {rank:>3}. {neighbour['title']:<42} score {neighbour['score']:.3f}, {reason}")


def show_popular(answer):
    print(f"  Popular in the last {answer['recent_days']} days of the data:")
    for rank, item in enumerate(answer["items"], start=1):
        print(f"  {rank:>3}. {item['title']:<42} {item['recent_buyers']} recent buyers")


def show_recommendations(answer):
    kind = "known customer" if answer["known_user"] else "unknown visitor, popular fallback"
    print(f"  Recommendations for {answer['user_id']} ({kind}, model {answer['model_version']}):")
    for rank, item in enumerate(answer["recommendations"], start=1):
        print(f"  {rank:>3}. {item['title']:<42} score {item['score']:.4f} from {item['source']}")


def show_events(answer):
    print(f"  Stored {answer['stored']}, already stored {answer['duplicates']}")


def show_preferences(answer):
    print(f"  Preferences of {answer['user_id']}:")
    favourites = ", ".join(item["title"] for item in answer["favourite_items"][:5])
    print(f"    favourite items: {favourites}")
    print(f"    themes:          {', '.join(theme['term'] for theme in answer['themes'][:8])}")
    band = answer.get("price_band") or {}
    if band:
        print(f"    price band:      {band['band']} (median item price {band['median_price']:.2f})")
    frequency = answer["purchase_frequency"]
    print(f"    orders:          {frequency['orders']}, {frequency['orders_per_month']:.1f} a month")
    print(f"    last activity:   {answer['last_activity']}")
    events = answer["events"]
    print(f"    live events:     {events['view']} views, {events['add_to_cart']} added to cart, {events['purchase']} purchases")


SHOW = {
    "similar": show_similar,
    "popular": show_popular,
    "recommendations": show_recommendations,
    "events": show_events,
    "preferences": show_preferences,
}


def main():
    kind = sys.argv[1]
    text = sys.stdin.read()
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        print(f"  invalid JSON answer: {text[:200]!r}")
        return 1
    if "status" in answer and "title" in answer and "detail" in answer:
        show_problem(answer)
        return 1
    SHOW[kind](answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
