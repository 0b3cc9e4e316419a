"""Courses: categories, templates, activities, signups and their waiting lists."""
